"""Pure logic of the gateway: template resolution, route selection, event shapes, authorizer decisions."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)

from parley_local.gateway import authorizer as authz
from parley_local.gateway.cfn import Resolver
from parley_local.gateway.events import ConnectionInfo, authorizer_event, aws_id, clf_time, connect_event, disconnect_event, message_event
from parley_local.gateway.routing import RouteSelector
from parley_local.gateway.template import load_stack

FIXTURES = Path(__file__).parent / "fixtures"
ID_RE = re.compile(r"^[A-Za-z0-9+/]{15}=$")


# -- template ------------------------------------------------------------------------


def test_fixture_template_discovers_routes_functions_and_tables():
    stack = load_stack(FIXTURES / "template.yaml", "fx", {"RecordDir": "/tmp/r", "SharedValue": "ov"})
    api = stack.api
    assert api.selection_expression == "$request.body.action"
    assert set(api.routes) >= {"$connect", "$disconnect", "$default", "echo", "1", "noreply", "fail", "env_a", "env_b"}
    assert api.routes["$connect"].authorizer.function == "AuthFunction"
    assert api.routes["$connect"].authorizer.identity_sources == ["route.request.querystring.token"]
    assert api.routes["$disconnect"].function == "DisconnectFunction"  # via !Join + !GetAtt
    assert api.routes["env_a"].function == "EnvAFunction"  # IntegrationUri is the bare function ARN
    assert api.routes["echo"].route_response and not api.routes["noreply"].route_response
    fns = stack.functions
    assert fns["EnvAFunction"].name == "fx-env-a"
    assert fns["SlowFunction"].timeout_s == 1.0 and fns["EchoFunction"].timeout_s == 5.0  # Globals, overridden
    assert fns["EnvAFunction"].environment["FIXTURE_VALUE"] == "value-a"
    assert fns["EchoFunction"].environment == {"RECORD_DIR": "/tmp/r", "SHARED_VALUE": "ov", "FIXTURE_VALUE": "global"}
    assert fns["DdbFunction"].environment["ITEMS_TABLE"] == "fx-items"
    assert fns["EchoFunction"].layer_dirs == [FIXTURES / "layer" / "python"]
    assert fns["EchoFunction"].code_dir == FIXTURES / "functions"
    tables = {t.logical_id: t for t in stack.tables}
    items = tables["ItemsTable"]
    assert items.name == "fx-items" and items.ttl_attribute == "expiresAt"
    assert items.create_args["GlobalSecondaryIndexes"][0]["IndexName"] == "ByGsk"
    assert tables["CountersTable"].create_args["KeySchema"] == [{"AttributeName": "counter", "KeyType": "HASH"}]
    assert stack.parameters["JwtSecretParameterName"] == "/fixture/jwt-secret"


def test_conditions_drop_resources():
    stack = load_stack(FIXTURES / "template.yaml", "fx", {"UseSimpleTable": "no"})
    assert [t.logical_id for t in stack.tables] == ["ItemsTable"]


def test_intrinsics():
    doc = {
        "Parameters": {"Env": {"Type": "String", "Default": "dev"}, "Names": {"Type": "CommaDelimitedList", "Default": "a,b,c"}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]}},
        "Mappings": {"M": {"dev": {"size": "1"}}},
        "Resources": {
            "T": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": {"Fn::Sub": "${AWS::StackName}-t-${Env}"}}},
            "F": {"Type": "AWS::Serverless::Function", "Properties": {}},
        },
    }
    r = Resolver(doc, "st", {})
    assert r.resolve({"Ref": "T"}) == "st-t-dev"
    assert r.resolve({"Fn::GetAtt": ["T", "Arn"]}) == "arn:aws:dynamodb:us-east-1:123456789012:table/st-t-dev"
    assert r.resolve({"Fn::Sub": "${F.Arn}|${AWS::Region}|${AWS::AccountId}|${AWS::Partition}|${!Literal}"}) == (
        "arn:aws:lambda:us-east-1:123456789012:function:st-F|us-east-1|123456789012|aws|${Literal}"
    )
    assert r.resolve({"Fn::Sub": ["${x}-${Env}", {"x": {"Ref": "F"}}]}) == "st-F-dev"
    assert r.resolve({"Fn::Join": ["-", ["a", {"Ref": "Env"}]]}) == "a-dev"
    assert r.resolve({"Fn::Select": [1, {"Ref": "Names"}]}) == "b"
    assert r.resolve({"Fn::Select": [0, {"Fn::Split": [",", "x,y"]}]}) == "x"
    assert r.resolve({"Fn::If": ["IsProd", "big", "small"]}) == "small"
    assert r.resolve({"Fn::FindInMap": ["M", {"Ref": "Env"}, "size"]}) == "1"
    assert r.resolve({"a": {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]}, "b": 2}) == {"b": 2}
    assert Resolver(doc, "st", {"Env": "prod"}).resolve({"Fn::If": ["IsProd", "big", "small"]}) == "big"


# -- routing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"action": "echo"}', "echo"),
        ('{"action": 1}', "1"),  # non-string values are stringified
        ('{"action": true}', "true"),
        ('{"action": "nope"}', "$default"),
        ('{"other": "echo"}', "$default"),
        ("not json", "$default"),
        ('["echo"]', "$default"),
        ('{"action": "$connect"}', "$default"),  # never selected by a body
        ('{"action": "$disconnect"}', "$default"),
    ],
)
def test_route_selection(body, expected):
    sel = RouteSelector("$request.body.action", ["$connect", "$disconnect", "$default", "echo", "1", "true"])
    assert sel.select(body) == expected


def test_route_selection_nested_path_and_no_default():
    sel = RouteSelector("${request.body.meta.kind}", ["a"])
    assert sel.select('{"meta": {"kind": "a"}}') == "a"
    assert sel.select('{"meta": {"kind": "b"}}') is None  # -> Forbidden frame
    assert sel.select("{}") is None


# -- events --------------------------------------------------------------------------


def _info(**kw) -> ConnectionInfo:
    base = dict(
        connection_id=aws_id(), api_id="abcdefghij", stage="local", domain_name="127.0.0.1:3001",
        source_ip="127.0.0.1", user_agent="ua", connected_at=1731324924000,
        headers={"Host": "127.0.0.1:3001"}, multi_value_headers={"Host": ["127.0.0.1:3001"]},
    )
    base.update(kw)
    return ConnectionInfo(**base)


def test_ids_and_request_time():
    for _ in range(200):
        assert ID_RE.match(aws_id())
    assert clf_time(1731324924000) == "11/Nov/2024:11:35:24 +0000"


def test_events_pass_powertools_models():
    info = _info()
    connect = connect_event(info, aws_id())
    assert "queryStringParameters" not in connect and connect["isBase64Encoded"] is False
    APIGatewayWebSocketConnectEventModel.model_validate(connect)
    with_query = connect_event(_info(query={"token": "t"}, multi_value_query={"token": ["t"]}), aws_id())
    assert with_query["queryStringParameters"] == {"token": "t"}
    info.authorizer = {"principalId": "alice", "name": "Alice"}
    msg = message_event(info, "echo", '{"action":"echo"}', aws_id(), aws_id())
    assert "headers" not in msg and msg["requestContext"]["authorizer"]["principalId"] == "alice"
    APIGatewayWebSocketMessageEventModel.model_validate(msg)
    disc = disconnect_event(info, aws_id(), 1005, "Client-side close frame status not set")
    assert set(disc["headers"]) == {"Host", "x-api-key", "X-Forwarded-For", "x-restapi"}
    APIGatewayWebSocketDisconnectEventModel.model_validate(disc)
    ctx = msg["requestContext"]
    assert ctx["requestId"] == ctx["extendedRequestId"] and ctx["messageDirection"] == "IN"
    auth = authorizer_event(_info(query={"token": "t"}), aws_id())
    assert auth["type"] == "REQUEST" and auth["methodArn"].endswith("/local/$connect")


# -- authorizer decisions ------------------------------------------------------------


ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdefghij/local/$connect"


def _policy(effect: str, resource: str = ARN, **extra):
    return {"principalId": "u", "policyDocument": {"Version": "2012-10-17", "Statement": [
        {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}, **extra}


def test_authorizer_decisions():
    assert authz.decide(None, "Unauthorized", ARN).status == 401
    assert authz.decide(None, "boom", ARN).status == 500
    assert authz.decide({"x": 1}, None, ARN).status == 500
    assert authz.decide(_policy("Deny"), None, ARN).status == 403
    assert authz.decide(_policy("Allow", "arn:aws:execute-api:us-east-1:123456789012:other/*"), None, ARN).status == 403
    ok = authz.decide(_policy("Allow", "arn:aws:execute-api:*:*:abcdefghij/*", context={"name": "A", "n": 1}), None, ARN)
    assert ok.status == 200 and ok.authorizer == {"principalId": "u", "name": "A", "n": 1}
    assert authz.decide(_policy("Allow", context={"bad": {"nested": 1}}), None, ARN).status == 500
    assert authz.decide(_policy("Allow", context={"big": "x" * 9000}), None, ARN).status == 500
    assert authz.missing_identity(["route.request.querystring.token"], {}, None)
    assert authz.missing_identity(["route.request.querystring.token"], {}, {"token": ""})
    assert not authz.missing_identity(["route.request.querystring.token"], {}, {"token": "t"})
    assert authz.missing_identity(["route.request.header.Auth"], {"Other": "x"}, None)
    assert not authz.missing_identity(["route.request.header.Auth"], {"auth": "x"}, None)


# -- execution environments: when the pool cold-starts another worker ------------------


class _FakeWorker:
    """Stands in for a worker process: each invocation takes `seconds` of waiting, no CPU."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.alive = True
        self.init_error = None
        self.generation = 0  # the pool's code generation (FunctionPool.retire)
        self.cold = False
        self.init_ms = 50.0
        self.last_used = 0.0
        self.proc = SimpleNamespace(pid=0)  # read only by the CPU wait meter, which the tests set

    def begin(self, event, request_id, timeout_s, done):
        from parley_local.gateway.environment import Invocation

        asyncio.get_running_loop().call_later(self.seconds, done, Invocation(request_id, result=event))

    async def stop(self):
        self.alive = False


def _fake_pool(seconds: float, cpu_to_spare: bool = False, cold_start_s: float = 0.05,
               starved: bool | None = False):
    from types import SimpleNamespace

    from parley_local.gateway import worker_pool as lr
    from parley_local.gateway.console import Console

    started: list[_FakeWorker] = []

    async def start(*_args, **_kw):
        await asyncio.sleep(cold_start_s)
        worker = _FakeWorker(seconds)
        started.append(worker)
        return worker

    class WaitMeter:
        def starved(self, pids):
            return starved  # False: waiting for work, not a CPU

    scaling = lr.Scaling(burst_workers=2, cpu_to_spare=lambda: cpu_to_spare,  # False: as on a busy 2-core machine
                         wait_meter=WaitMeter, start_worker=start)  # the pool's own _start_worker runs around start
    pool = lr.FunctionPool(SimpleNamespace(timeout_s=5.0, logical_id="Fn"), {}, Console(quiet=True), max_concurrency=32,
                           scaling=scaling)
    return pool, started


async def _in_flight(pool, n: int, at_once: int) -> list:
    """`n` invocations with at most `at_once` waiting or running, as a client's handshakes in flight."""
    gate = asyncio.Semaphore(at_once)

    async def one(i: int):
        async with gate:
            return await pool.invoke({"i": i}, f"r{i}")

    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), 10)


@pytest.mark.parametrize("cpu_to_spare", [False, True])
async def test_a_burst_whose_queue_drains_fast_does_not_cold_start_another_worker(cpu_to_spare: bool):
    """1,000 handshakes, 50 in flight, used to cold-start a dozen `$connect` workers (~0.5 s of CPU each) on 2 cores.
    A queue that moves in milliseconds (20 in flight, 1 ms each) gets none, a CPU idle or not: an import would
    cost more than the whole wait."""
    pool, started = _fake_pool(0.001, cpu_to_spare=cpu_to_spare)
    await pool.prewarm()
    results = await _in_flight(pool, 300, 20)
    assert [r.result["i"] for r in results] == list(range(300))
    assert len(started) == 1  # the prewarmed one serves the whole burst
    await pool.close()


async def test_a_queue_that_waits_gets_a_second_worker_even_without_a_spare_cpu():
    """A room's ten fan-out shards, or Ctrl-C's `$disconnect` of every socket: 300 waiting at once, 2 ms each, wait
    past COLD_START_DELAY_S for the one environment, and BURST_WORKERS' second starts, busy machine or not."""
    pool, started = _fake_pool(0.002)
    await pool.prewarm()
    results = await asyncio.wait_for(asyncio.gather(*(pool.invoke({"i": i}, f"r{i}") for i in range(300))), 10)
    assert [r.result["i"] for r in results] == list(range(300))
    assert len(started) == 2
    await pool.close()


async def test_a_queue_whose_environment_waits_for_a_cpu_gets_no_second():
    """The same queue on a machine whose cores are taken (a connection burst: the authorizer's environment waits
    for a CPU longer than it runs): another environment would only add its import. Not known yet: no start."""
    for starved in (True, None):
        pool, started = _fake_pool(0.002, starved=starved)
        await pool.prewarm()
        await asyncio.wait_for(asyncio.gather(*(pool.invoke({"i": i}, f"r{i}") for i in range(300))), 10)
        assert len(started) == 1, starved
        await pool.close()


async def test_a_stuck_pool_gets_a_second_worker_even_when_starved():
    """A slow handler (no invocation finishing for STUCK_S) still gets BURST_WORKERS' second environment."""
    pool, started = _fake_pool(0.6, starved=True)
    await pool.prewarm()
    await asyncio.wait_for(asyncio.gather(*(pool.invoke({}, f"r{i}") for i in range(3))), 10)
    assert len(started) == 2
    await pool.close()


def test_cpu_wait_meter_compares_waiting_for_a_cpu_with_running():
    """From /proc/PID/schedstat (ns on a CPU, ns runnable but not running), summed over the environments,
    over the window since the last look; unknown without a fresh earlier reading."""
    from parley_local.gateway import cpu_meters as meters

    stats = {1: (1_000, 1_000), 2: (5_000, 0)}
    clock = [100.0]
    meter = meters.CpuWaitMeter(read=stats.get, clock=lambda: clock[0])
    assert meter.starved([1, 2]) is None  # no earlier reading
    stats.update({1: (2_000, 4_000), 2: (6_000, 1_000)})  # ran 1,000 + 1,000, waited 3,000 + 1,000
    clock[0] += 0.1
    assert meter.starved([1, 2]) is True
    stats.update({1: (5_000, 4_500), 2: (6_000, 1_000)})  # ran 3,000, waited 500: busy on a CPU, or idle
    clock[0] += 0.1
    assert meter.starved([1, 2]) is False
    clock[0] += 5.0  # minutes of quiet: that reading says nothing of now
    assert meter.starved([1, 2]) is None
    assert meter.starved([3]) is None  # an environment gone (no schedstat): not known


async def test_a_burst_waiting_for_the_first_cold_start_does_not_start_a_second():
    """The first handshakes of a session all wait for the authorizer's first cold start. That wait is not counted:
    a second import in parallel only slows the first (the handshake burst used to cold-start two authorizer and two
    `$connect` environments, each second one's init ~1 s of CPU). Once one serves, 20 in flight queue for ms only."""
    pool, started = _fake_pool(0.001, cold_start_s=0.6)
    results = await _in_flight(pool, 300, 20)
    assert [r.result["i"] for r in results] == list(range(300))
    assert len(started) == 1
    await pool.close()


async def test_slow_invocations_still_get_workers_of_their_own():
    """A stuck pool (no invocation finishing) keeps scaling out while a CPU is spare, so a slow handler never blocks the others."""
    pool, started = _fake_pool(0.6, cpu_to_spare=True)
    await pool.prewarm()
    t = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(pool.invoke({}, f"r{i}") for i in range(4))), 10)
    assert time.monotonic() - t < 1.8  # four 0.6 s invocations one after another would take 2.4 s
    assert len(started) >= 3
    await pool.close()


async def test_a_stuck_pool_without_a_spare_cpu_does_not_scale_out():
    """Issue 15: a join storm on moto (one busy process) looks stuck to the pool (no invocation finishes for
    0.25 s), which grew JoinRoom to 25-32 environments that only added contention. No CPU, no new worker."""
    pool, started = _fake_pool(0.6, cpu_to_spare=False)
    await pool.prewarm()
    await asyncio.wait_for(asyncio.gather(*(pool.invoke({}, f"r{i}") for i in range(6))), 10)
    assert len(started) == 2  # the prewarmed one and BURST_WORKERS' second: the queue drains on them
    await pool.close()


async def test_a_draining_pool_starts_nothing_and_drops_its_queue():
    """Shutdown: the invocation running finishes; those waiting fail at once; later ones fail without waiting."""
    from parley_local.gateway.environment import WorkerDied

    pool, started = _fake_pool(0.3, cpu_to_spare=True)
    await pool.prewarm()
    running = asyncio.ensure_future(pool.invoke({"i": 0}, "r0"))
    waiting = [asyncio.ensure_future(pool.invoke({}, f"r{i}")) for i in range(1, 5)]
    await asyncio.sleep(0.01)
    assert pool.stop_starting() == 4
    assert (await running).result == {"i": 0}
    for task in waiting:
        with pytest.raises(WorkerDied):
            await task
    await asyncio.sleep(0.3)  # the start timer would have fired by now
    assert len(started) == 1 and pool.starting == 0
    assert (await pool.invoke({"i": 5}, "r5")).result == {"i": 5}  # an idle environment still serves
    pool.idle.clear()
    with pytest.raises(WorkerDied):
        await asyncio.wait_for(pool.invoke({}, "r6"), 1)  # none idle: no wait, no start
    await pool.close()


def test_cpu_idle_meter_reads_the_last_window_not_the_load_average():
    """A burst that has just taken every CPU means no CPU to spare, though the 1-minute load average still looks idle."""
    from parley_local.gateway import cpu_meters as meters

    readings = iter([(1000, 2000), (1000 + 950, 2000 + 1000), (1950 + 10, 3000 + 1000)])  # (idle ticks, all ticks)
    clock = iter([0.0, 1.2, 2.4, 2.5])  # the last look is within the window: the same answer
    meter = meters.CpuIdleMeter(read=lambda: next(readings), clock=lambda: next(clock), cpu_count=lambda: 2)
    assert meters.cpu_to_spare(meter)  # 95% idle over the first window: 1.9 CPUs
    assert not meters.cpu_to_spare(meter)  # 1% idle over the next: the burst has every CPU
    assert meter.idle_cpus() == pytest.approx(0.02)


def test_cpu_idle_meter_does_not_answer_for_a_burst_from_the_quiet_before_it():
    """The first look after minutes of quiet would average the quiet and say "spare" as a burst takes every
    CPU: it is "not known" instead, until a short window of the burst itself has been read."""
    from parley_local.gateway import cpu_meters as meters

    readings = iter([(0, 0), (59_000, 60_000), (59_000 + 1, 60_000 + 40)])  # (idle ticks, all ticks)
    clock = iter([0.0, 300.0, 300.1, 300.2, 300.4])
    meter = meters.CpuIdleMeter(read=lambda: next(readings), clock=lambda: next(clock), cpu_count=lambda: 2)
    assert not meters.cpu_to_spare(meter)  # 5 minutes of 98% idle, but that is not now
    assert meter.resuming
    assert not meters.cpu_to_spare(meter)  # 0.1 s later: the short window has not ended, still not known
    assert not meters.cpu_to_spare(meter)  # 0.2 s: 1 idle tick of 40, the burst has both CPUs
    assert meter.idle_cpus() == pytest.approx(0.05) and not meter.resuming


class _ManualWorker(_FakeWorker):
    """A worker whose invocations end when the test says: it records each request as the pool writes it."""

    def __init__(self, init_error: dict | None = None):
        super().__init__(0.0)
        self.init_error = init_error
        self.begun: list[str] = []
        self.dones: list = []

    def begin(self, event, request_id, timeout_s, done):
        from parley_local.gateway.environment import Invocation

        self.begun.append(request_id)
        if self.init_error is not None:  # as Worker.begin: the init error ends the invocation at once
            done(Invocation(request_id, error=self.init_error))
            return None
        self.dones.append(done)
        return None


def _manual_pool(worker: _ManualWorker, cold_start_s: float = 0.0):
    from types import SimpleNamespace

    from parley_local.gateway import worker_pool as lr
    from parley_local.gateway.console import Console

    async def start(*_args, **_kw):
        await asyncio.sleep(cold_start_s)
        return worker

    class WaitMeter:
        def starved(self, pids):
            return True  # no second environment: the test watches one

    scaling = lr.Scaling(burst_workers=1, cpu_to_spare=lambda: False, wait_meter=WaitMeter, start_worker=start)
    return lr.FunctionPool(SimpleNamespace(timeout_s=5.0, logical_id="Fn"), {}, Console(quiet=True), max_concurrency=1,
                           scaling=scaling)


async def test_an_environment_gets_the_next_waiting_request_in_the_callback_that_ends_its_last():
    """No loop turn between an environment's reply and its next request: in a storm, that turn came after
    everything else the loop had read, and the environment idled meanwhile."""
    from parley_local.gateway.environment import Invocation

    worker = _ManualWorker()
    pool = _manual_pool(worker)
    await pool.prewarm()
    calls = [pool.begin({"i": i}, f"r{i}") for i in range(3)]
    assert worker.begun == ["r0"]  # one at a time per environment, as Lambda
    worker.dones[0](Invocation("r0", result=0))
    assert worker.begun == ["r0", "r1"]  # written before this callback returned: no await in between
    worker.dones[1](Invocation("r1", result=1))
    worker.dones[2](Invocation("r2", result=2))
    assert [(await c.outcome).result for c in calls] == [0, 1, 2]  # each its own outcome, in order
    assert list(pool.idle) == [worker] and not pool.waiters
    await pool.close()


async def test_invocations_queued_behind_a_failed_init_each_get_its_error_without_recursing():
    """2,000 handshakes waiting for an authorizer whose init fails: each gets the init error (Lambda's), one
    per loop callback. Handed over inside the callback, each would nest one call deeper: a RecursionError."""
    worker = _ManualWorker(init_error={"errorMessage": "boom", "errorType": "Runtime.ImportModuleError"})
    pool = _manual_pool(worker, cold_start_s=0.05)
    calls = [pool.begin({"i": i}, f"r{i}") for i in range(2000)]
    outcomes = await asyncio.wait_for(asyncio.gather(*(c.outcome for c in calls)), 10)
    assert [o.error["errorType"] for o in outcomes] == ["Runtime.ImportModuleError"] * 2000
    assert worker.begun == [f"r{i}" for i in range(2000)]  # in the order they came
    await pool.close()


def _blind_meter(load_average):
    """A meter on a machine without /proc/stat (macOS, Windows): only the load average can answer."""
    from parley_local.gateway import cpu_meters as meters

    return meters.CpuIdleMeter(read=lambda: None, clock=iter([0.0, 5.0, 10.0, 15.0]).__next__, cpu_count=lambda: 2,
                               load_average=load_average)


def test_without_proc_stat_the_load_average_decides_against_the_cpu_count():
    from parley_local.gateway import cpu_meters as meters

    assert meters.cpu_to_spare(_blind_meter(lambda: 0.7))  # under 2 CPUs' worth of runnable work: spare
    assert not meters.cpu_to_spare(_blind_meter(lambda: 2.4))  # over it: a second environment would only wait


@pytest.mark.parametrize("error", [AttributeError, OSError])
def test_without_proc_stat_or_a_load_average_a_burst_may_have_its_second_environment(error):
    """Nothing tells how busy the machine is (Windows has no load average): not a reason to refuse."""
    from parley_local.gateway import cpu_meters as meters

    def unknown() -> float:
        raise error("no load average here")

    assert meters.cpu_to_spare(_blind_meter(unknown))
