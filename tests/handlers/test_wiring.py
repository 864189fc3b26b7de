"""What only the real functions can show: each route's function reaches the rules, the route
response and the `@connections` posts go where API Gateway sends them, the environment's
over-limit memory and DeleteConnection are wired, and a failure inside becomes `internal_error`.
The rules themselves are tested in tests/domain."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest

from parley.core.rate_limits import OverLimitMemory
from parley_testing.chat_world import alice_and_bob_in_lobby


@pytest.fixture
def room(world):
    return alice_and_bob_in_lobby(world)


def test_every_route_function_serves_its_type(world, room):
    alice, bob = room
    assert alice.send("ping")["type"] == "pong"
    assert alice.send("message", {"message": 1})["type"] == "message_response"
    assert alice.send("chat_message", {"roomId": "lobby", "message": "hi"})["data"]["deliveredTo"] == 1
    seen = bob.take()[0]["data"]["messageId"]
    assert alice.send("typing", {"roomId": "lobby", "isTyping": True}) is None
    assert bob.send("mark_read", {"roomId": "lobby", "messageId": seen}) is None
    assert [f["type"] for f in bob.take()] == ["typing_update"]
    assert [f["type"] for f in alice.take() if f["type"] != "message_received"] == ["pong", "message_response", "chat_update", "chat_update"]
    assert [m["message"] for m in alice.send("get_history", {"roomId": "lobby"})["data"]["messages"]] == ["seed", "hi"]
    assert alice.send(raw='{"type":"dance"}')["data"]["code"] == "unknown_type"  # the $default function
    assert bob.send("leave_room", {"roomId": "lobby"}) is None
    assert [f["type"] for f in alice.take()] == ["chat_history", "error", "user_left"]


def test_internal_error_is_reported_without_a_stack_trace(world, room):
    alice, bob = room
    boto3.client("dynamodb").delete_table(TableName="test-MessagesTable")
    alice.send("chat_message", {"roomId": "lobby", "message": "into the void", "clientMessageId": "x1"})
    (frame,) = alice.take()
    assert frame["data"]["code"] == "internal_error"
    assert frame["data"]["clientMessageId"] == "x1"
    assert "Traceback" not in json.dumps(frame) and "ResourceNotFound" not in json.dumps(frame)
    assert "request id" in frame["data"]["message"]
    assert bob.take() == []


def test_a_flood_closes_the_connection_with_delete_connection(world, room):
    alice, bob = room
    world.use_limits(chat=3, signals=2, window_seconds=3600)
    for n in range(3 * 10):
        alice.send("chat_message", {"roomId": "lobby", "message": f"flood {n}"})
    assert world.closed == []
    alice.send("chat_message", {"roomId": "lobby", "message": "one more"})
    assert world.closed == [alice.connection_id]


def test_each_execution_environment_remembers_its_own_refusals(world, room, monkeypatch):
    import parley.aws.lambda_routes as routes

    alice, bob = room
    world.use_limits(chat=3, signals=2, window_seconds=3600)
    environments = [OverLimitMemory(), OverLimitMemory()]
    sent = 0
    while not world.closed and sent < 60:
        monkeypatch.setattr(routes, "_over_limit", environments[sent % 2])
        alice.send("chat_message", {"roomId": "lobby", "message": f"flood {sent}"})
        sent += 1
    assert world.closed == [alice.connection_id]
    assert 31 <= sent <= 31 + 2 * (3 - 1), sent


def test_the_deployed_batches_count_on_dynamodb_only_every_kth_frame_and_refuse_the_31st(world, room):
    """The template's defaults (CHAT_RATE_BATCH 5 of CHAT_RATE_LIMIT 30): one environment is exact."""
    import parley.aws.lambda_routes as routes

    alice, _ = room
    limit, batch = routes.settings.chat_rate_limit, routes.settings.chat_rate_batch
    assert (limit, batch) == (30, 5)
    # The same allowance and batch in a window this test cannot straddle (but once in an hour).
    world.use_limits(chat=limit, signals=120, window_seconds=3600, chat_batch=batch, signals_batch=11)
    routes._ledger.clear()  # alice's seed message came from the fixture; start her batch afresh

    def counted() -> int:
        return sum(int(i["hits"]["N"]) for i in world.items("IdempotencyTable") if i["key"]["S"].startswith("rate#chat#alice#"))

    before = counted()
    for _ in range(batch - 1):
        assert alice.send("chat_message", {"roomId": "lobby", "message": "slow"})["type"] == "chat_update"
    assert counted() == before  # below the batch: DynamoDB has not been written
    assert alice.send("chat_message", {"roomId": "lobby", "message": "kth"})["type"] == "chat_update"
    assert counted() == before + batch
    replies = [alice.send("chat_message", {"roomId": "lobby", "message": f"m{n}"}) for n in range(limit - before - batch + 1)]
    assert [r["type"] for r in replies[:-1]] == ["chat_update"] * (len(replies) - 1)
    assert replies[-1]["data"]["code"] == "rate_limited" and counted() == limit + 1


@pytest.mark.parametrize("value,ok", [("32000", True), ("32001", False), ("0", False)])
def test_a_message_limit_that_cannot_fit_a_client_frame_is_refused_at_start(value, ok):
    import os
    import subprocess
    import sys

    import parley

    env = {**os.environ, "MAX_MESSAGE_LENGTH": value}
    layer = os.path.dirname(os.path.dirname(parley.__file__))
    out = subprocess.run([sys.executable, "-c", "import parley.aws.config"], cwd=layer, env=env, capture_output=True, text=True, timeout=60)
    assert (out.returncode == 0) is ok, out.stderr[-500:]
    if not ok:
        assert "MAX_MESSAGE_LENGTH must be 1..32000 bytes" in out.stderr


@pytest.mark.parametrize("changes,refusal", [({"chat_rate_batch": 30}, None), ({"chat_rate_batch": 31}, None),
                                              ({"chat_rate_batch": 0}, "CHAT_RATE_BATCH (template parameter ChatRateBatch) must be at least 1, got 0"),
                                              ({"signal_rate_batch": -1}, "SIGNAL_RATE_BATCH (template parameter SignalRateBatch) must be at least 1, got -1"),
                                              ({"join_rate_batch": 0}, "JOIN_RATE_BATCH (template parameter JoinRateBatch) must be at least 1, got 0")])
def test_a_counter_batch_below_one_is_refused_with_the_settings(changes, refusal):
    """The settings are built on import (the test above), so this is the cold start; a batch above the allowance is fine."""
    from parley.aws.config import settings

    if refusal is None:
        assert dataclasses.replace(settings, **changes).chat_rate_batch == changes["chat_rate_batch"]
    else:
        with pytest.raises(RuntimeError) as refused:
            dataclasses.replace(settings, **changes)
        assert str(refused.value) == refusal


def test_participants_page_through_the_function(world, room):
    alice, bob = room
    first = alice.send("get_participants", {"roomId": "lobby", "limit": 1})["data"]
    assert first["participants"] == [{"userId": "alice", "name": "alice"}] and first["count"] == 2
    rest = alice.send("get_participants", {"roomId": "lobby", "cursor": first["nextCursor"]})["data"]
    assert rest == {"roomId": "lobby", "participants": [{"userId": "bob", "name": "bob"}], "count": 2}
    assert alice.send("get_participants", {"roomId": "lobby", "cursor": "forged"})["data"]["code"] == "validation_error"


def stream_event(world) -> dict:
    """What the memberships stream, filtered to `p#` inserts, hands the presence function."""
    rows = [i for i in world.items("MembershipsTable") if i["memberKey"]["S"].startswith("p#")]
    return {"Records": [
        {"eventName": "INSERT", "eventSource": "aws:dynamodb",
         "dynamodb": {"Keys": {"roomId": r["roomId"], "memberKey": r["memberKey"]}, "NewImage": r, "StreamViewType": "NEW_IMAGE"}}
        for r in rows
    ]}


def test_a_large_room_hears_presence_through_the_presence_function(world, monkeypatch):
    import dataclasses

    import parley.aws.lambda_routes as routes

    monkeypatch.setattr(routes, "settings", dataclasses.replace(routes.settings, presence_threshold=3))
    clients = []
    for user in ("alice", "bob", "carol", "dave"):
        client = world.connect(user)
        client.send("join_room", {"roomId": "hall"})
        clients.append(client)
    world.collect()
    alice = clients[0]
    assert [f["type"] for f in alice.take()] == ["participants_list", "chat_history", "user_joined"]  # bob: a room of 2
    event = stream_event(world)
    assert len(event["Records"]) == 2  # carol and dave joined a room of 3 and more: recorded, not announced
    assert world.invoke("presence", event) == {"changes": 2}
    world.collect()
    (update,) = [f["data"] for f in alice.take()]
    assert update == {"roomId": "hall", "joined": [{"userId": "carol", "name": "carol"}, {"userId": "dave", "name": "dave"}],
                      "left": [], "joinedCount": 2, "leftCount": 0, "count": 4}


def test_a_large_room_is_delivered_by_the_fanout_function_once_per_connection(world, monkeypatch):
    import dataclasses

    import parley.aws.lambda_routes as routes
    from parley_testing.fakes import ShardQueue

    shards = ShardQueue()
    monkeypatch.setattr(routes, "_shards", shards)
    monkeypatch.setattr(routes, "settings", dataclasses.replace(routes.settings, fanout_shard_size=2))
    clients = []
    for n in range(5):
        client = world.connect(f"user{n}")
        client.send("join_room", {"roomId": "hall"})
        clients.append(client)
    for job in shards.jobs:  # user_joined to 3 and 4 others went through shards too
        world.invoke("fanout", job.to_event())
    shards.jobs.clear()
    world.collect()
    for client in clients:
        client.take()
    reply = clients[0].send("chat_message", {"roomId": "hall", "message": "to the hall"})
    assert reply["data"]["status"] == "sent" and reply["data"]["recipients"] == 4
    assert [len(job.recipients) for job in shards.jobs] == [2, 2, 1]
    events = [job.to_event() for job in shards.jobs]
    for event in events + events:  # every shard, then every shard retried
        world.invoke("fanout", event)
    world.collect()
    for client in clients:
        assert [f["data"]["message"] for f in client.take() if f["type"] == "message_received"] == ["to the hall"]


def test_a_room_beyond_one_page_is_continued_by_the_fanout_function_and_retries_deliver_once(world, monkeypatch):
    import dataclasses

    import parley.aws.lambda_routes as routes
    from parley.core.model import RoomContinuation
    from parley_testing.fakes import ShardQueue

    shards = ShardQueue()
    monkeypatch.setattr(routes, "_shards", shards)
    monkeypatch.setattr(routes, "_self_shards", shards)  # the fan-out function dispatches to itself
    monkeypatch.setattr(routes, "settings", dataclasses.replace(routes.settings, fanout_shard_size=2, fanout_page_size=3))
    clients = []
    for n in range(8):
        client = world.connect(f"user{n}")
        client.send("join_room", {"roomId": "hall"})
        clients.append(client)

    def run_queued() -> None:
        while shards.jobs:
            world.invoke("fanout", shards.jobs.pop(0).to_event())

    run_queued()
    world.collect()
    for client in clients:
        client.take()
    reply = clients[0].send("chat_message", {"roomId": "hall", "message": "to every page"})
    assert reply["data"]["status"] == "sent" and reply["data"]["recipients"] == 7  # the room's size counter
    (continuation,) = [job for job in shards.jobs if isinstance(job, RoomContinuation)]
    assert [len(job.recipients) for job in shards.jobs if job is not continuation] == [2, 1]  # the handler's page of 3
    world.invoke("fanout", continuation.to_event())  # the continuation, then Lambda's retry of it
    world.invoke("fanout", continuation.to_event())
    run_queued()
    world.collect()
    for client in clients:
        assert [f["data"]["message"] for f in client.take() if f["type"] == "message_received"] == ["to every page"]


class InvokeEndpoint:
    """Lambda's Invoke API on 127.0.0.1, answering each call with the next scripted status (202 after)."""

    def __init__(self, statuses: list[int]) -> None:
        import http.server
        import threading

        self.calls: list[dict] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                endpoint.calls.append({"path": self.path, "headers": dict(self.headers), "event": json.loads(body)})
                status = statuses.pop(0) if statuses else 202
                self.send_response(status)
                if status != 202:
                    self.send_header("x-amzn-ErrorType", {429: "TooManyRequestsException", 404: "ResourceNotFoundException"}[status])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def invoke_endpoint(monkeypatch):
    endpoints = []

    def start(statuses: list[int]) -> InvokeEndpoint:
        endpoint = InvokeEndpoint(statuses)
        endpoints.append(endpoint)
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.url)
        return endpoint

    yield start
    for endpoint in endpoints:
        endpoint.server.shutdown()


def _jobs(count: int):
    from parley.core.model import ShardJob

    return [ShardJob("hall", "01ARZ3NDEKTSV4RRFFQ69G5FAV", n, '{"type":"x","data":{}}', (("c1", "u1"),)) for n in range(count)]


def test_the_shard_dispatcher_queues_one_signed_async_invoke_per_shard(invoke_endpoint):
    from parley.aws.lambda_invoke import LambdaShardDispatcher
    from parley.core.model import ShardJob

    endpoint = invoke_endpoint([])
    jobs = _jobs(3)
    assert LambdaShardDispatcher("arn:aws:lambda:us-east-1:123456789012:function:parley-Fanout").dispatch(jobs) == []
    assert sorted(c["event"]["shard"] for c in endpoint.calls) == [0, 1, 2]
    assert {c["path"] for c in endpoint.calls} == {
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aparley-Fanout/invocations"}
    for call in endpoint.calls:
        assert call["headers"]["X-Amz-Invocation-Type"] == "Event"
        authorization = call["headers"]["Authorization"]
        assert authorization.startswith("AWS4-HMAC-SHA256 Credential=") and "/us-east-1/lambda/aws4_request" in authorization
        assert "x-amz-invocation-type" in authorization  # the invocation type is signed, so it cannot be changed on the way
        assert ShardJob.from_event(call["event"]) in jobs


def test_a_throttled_invoke_is_retried_and_a_refused_one_handed_back(invoke_endpoint):
    from parley.aws.lambda_invoke import LambdaShardDispatcher

    sleeps: list[float] = []
    endpoint = invoke_endpoint([429, 429])
    [job] = _jobs(1)
    assert LambdaShardDispatcher("parley-Fanout", sleep=sleeps.append).dispatch([job]) == []
    assert len(endpoint.calls) == 3 and len(sleeps) == 2  # queued on the third attempt, after two backoffs
    endpoint = invoke_endpoint([404])
    assert LambdaShardDispatcher("parley-Missing", sleep=sleeps.append).dispatch([job]) == [job]  # never retried
    assert len(endpoint.calls) == 1 and len(sleeps) == 2
    endpoint = invoke_endpoint([429] * 5)
    assert LambdaShardDispatcher("parley-Busy", sleep=sleeps.append).dispatch([job]) == [job]  # throttled after every retry
    assert len(endpoint.calls) == 5
