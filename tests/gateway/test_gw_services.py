"""Embedded DynamoDB and SSM, dev tokens, the dev HTTP routes and the `parley` CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import jwt
import pytest
import websockets

from parley_local.local_aws.account import aws_client
from parley_local.local_aws.services import LocalAws
from parley_testing.gateway_thread import MAIN_TEMPLATE, SMALL_TEMPLATE, RunningGateway
from parley_testing.dev_process import DevProcess
from parley_testing.dev_process import group_pids as _group_pids
from parley_testing.waiting import wait_for
from parley_local.tokens import DEV_SECRET_DEFAULT
from parley_testing.fixture_clients import closed_with, connect, my_id, request

REPO = Path(__file__).resolve().parents[2]


# -- DynamoDB / SSM ------------------------------------------------------------------


def test_tables_created_from_the_template(gw: RunningGateway):
    ddb = gw.gateway.aws.client("dynamodb")
    table = ddb.describe_table(TableName="fx-items")["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    gsi = table["GlobalSecondaryIndexes"][0]
    assert gsi["IndexName"] == "ByGsk" and gsi["Projection"]["ProjectionType"] == "KEYS_ONLY"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName="fx-items")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}
    assert ddb.describe_table(TableName="fx-CountersTable")["Table"]["KeySchema"][0]["AttributeName"] == "counter"


def test_dev_secret_seeded_into_ssm(gw: RunningGateway):
    ssm = aws_client("ssm", gw.gateway.http_url)  # the gateway serves SSM itself (`parameter_store`)
    value = ssm.get_parameter(Name="/fixture/jwt-secret", WithDecryption=True)["Parameter"]["Value"]
    assert value == (os.environ.get("PARLEY_JWT_SECRET") or DEV_SECRET_DEFAULT)


async def test_handlers_reach_dynamodb_with_boto3_and_pynamodb(gw: RunningGateway):
    ws = await connect(gw)
    reply = await request(ws, {"action": "ddb", "pk": f"k{time.time_ns()}"})
    assert reply == {"items": ["from boto3", "from pynamodb"], "table": "fx-items"}
    await ws.close()


async def test_external_dynamodb_endpoint(gw: RunningGateway, tmp_path: Path):
    external = gw.gateway.aws.dynamodb_endpoint  # moto's, standing in for a DynamoDB the developer runs
    other = RunningGateway(MAIN_TEMPLATE, tmp_path, stack_name="ext", prewarm=False, dynamodb_endpoint=external)
    await asyncio.to_thread(other.start)
    try:
        assert other.gateway.aws.dynamodb_endpoint == external
        assert other.gateway.aws.moto is None  # nothing else started: moto waits for a call that needs it
        assert "ext-items" in gw.gateway.aws.client("dynamodb").list_tables()["TableNames"]
        ws = await connect(other)
        pk = f"ext{time.time_ns()}"
        assert (await request(ws, {"action": "ddb", "pk": pk}))["table"] == "ext-items"
        await ws.close()
        items = gw.gateway.aws.client("dynamodb").query(
            TableName="ext-items", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": pk}})
        assert items["Count"] == 2
    finally:
        await asyncio.to_thread(other.stop)
    assert LocalAws(dynamodb_endpoint=external).env() == {"AWS_ENDPOINT_URL_DYNAMODB": external}


# -- dev HTTP routes -----------------------------------------------------------------


async def test_dev_token_route_and_client_files(tmp_path: Path):
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    (client_dir / "parley-client.js").write_text("export const x = 1;\n")
    (client_dir / "ws-test.html").write_text("<html>ws-test</html>")
    g = RunningGateway(SMALL_TEMPLATE, tmp_path / "rec", client_dir=client_dir, prewarm=False)
    await asyncio.to_thread(g.start)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{g.http_url}/dev/token", params={"user": "alice", "name": "Alice"}) as res:
                token = (await res.json())["token"]
            claims = jwt.decode(token, os.environ.get("PARLEY_JWT_SECRET") or DEV_SECRET_DEFAULT, algorithms=["HS256"])
            assert claims["sub"] == "alice" and claims["name"] == "Alice" and claims["exp"] > time.time()
            async with http.get(f"{g.http_url}/dev/token") as res:
                assert res.status == 400
            async with http.get(f"{g.http_url}/parley-client.js") as res:
                assert res.status == 200 and "javascript" in res.headers["Content-Type"]
                assert await res.text() == "export const x = 1;\n"
            async with http.get(f"{g.http_url}/ws-test") as res:
                assert res.status == 200 and "text/html" in res.headers["Content-Type"]
            async with http.get(f"{g.http_url}/parley-client.d.ts") as res:
                assert res.status == 404  # not written yet: 404, not a crash
            async with http.get(f"{g.http_url}/local") as res:  # plain GET on the stage, no upgrade
                assert res.status == 426
    finally:
        await asyncio.to_thread(g.stop)


# -- parley token --------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parley_local.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=30,
        env={**os.environ, **(env or {})},
    )


def test_parley_token():
    out = _cli("token", "alice", "--name", "Alice", "--ttl", "60", env={"PARLEY_JWT_SECRET": ""})
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(out.stdout.strip(), DEV_SECRET_DEFAULT, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["name"] == "Alice" and claims["exp"] - claims["iat"] == 60

    custom = _cli("token", "bob", env={"PARLEY_JWT_SECRET": "a-custom-secret-that-is-long-enough-for-hs256"}).stdout.strip()
    assert jwt.decode(custom, "a-custom-secret-that-is-long-enough-for-hs256", algorithms=["HS256"])["name"] == "bob"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(custom, DEV_SECRET_DEFAULT, algorithms=["HS256"])

    expired = _cli("token", "carol", "--ttl", "-5", env={"PARLEY_JWT_SECRET": ""}).stdout.strip()
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(expired, DEV_SECRET_DEFAULT, algorithms=["HS256"])


# -- parley dev ----------------------------------------------------------------------


async def test_parley_dev_banner_and_ctrl_c(tmp_path: Path):
    dev = small_template_dev(tmp_path, "--stage", "dev", "--no-prewarm")
    proc = dev.proc
    try:
        url = await asyncio.to_thread(dev.wait_ready, 30.0)
        banner = "".join(dev.lines)
        assert re.search(r"^ws://127\.0\.0\.1:\d+/dev$", url)
        assert f"WebSocket:     {url}" in banner
        assert re.search(r"\$disconnect\s+->\s+DisconnectFunction", banner)
        assert re.search(r"echo\s+->\s+EchoFunction\s+\[route response\]", banner)
        assert "parley token alice" in banner

        ws = await websockets.connect(url, open_timeout=10)
        conn_id = await my_id(ws)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group, workers included
        code, reason = await closed_with(ws, 15)
        assert (code, reason) == (1001, "Going away")
        assert await asyncio.to_thread(proc.wait, 20) == 0
        rest = dev.output()
        assert "Stopped." in rest
        assert re.search(rf"\$disconnect\s+{re.escape(conn_id)}.*\(close 1001\)", rest)
        rec = [p for p in tmp_path.glob(f"{conn_id}.DISCONNECT.*.json")]
        assert rec and json.loads(rec[0].read_text())["event"]["requestContext"]["disconnectStatusCode"] == 1001
    finally:
        dev.kill()


# -- Ctrl-C --------------------------------------------------------------------------


def small_template_dev(tmp_path: Path, *extra: str) -> DevProcess:
    """`parley dev` on the small fixture template, its handlers recording under `tmp_path`."""
    return DevProcess(["--template", str(SMALL_TEMPLATE), "--port", "0", "--dynamodb", "moto",
                       "--parameter-overrides", f"RecordDir={tmp_path}", *extra])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
@pytest.mark.parametrize(
    ("sig", "whole_group"),
    [(signal.SIGINT, True), (signal.SIGINT, False), (signal.SIGTERM, True)],
    ids=["ctrl-c-to-process-group", "sigint-to-gateway-only", "sigterm-to-process-group"],
)
async def test_one_ctrl_c_stops_promptly_and_runs_every_disconnect(tmp_path: Path, sig: int, whole_group: bool):
    dev = small_template_dev(tmp_path, "--prewarm")  # worker processes are in the group when Ctrl-C arrives
    try:
        await asyncio.to_thread(dev.read_until, r"DynamoDB:.*\(moto, subprocess pid \d+\)")
        url = (await asyncio.to_thread(dev.read_until, r"Ready on (ws://\S+)")).group(1)
        socks = [await websockets.connect(url, open_timeout=10) for _ in range(3)]
        ids = [await my_id(s) for s in socks]
        assert len(_group_pids(dev.proc.pid)) >= 4  # gateway, moto, EchoFunction, DisconnectFunction
        started = time.monotonic()
        dev.interrupt(whole_group, sig)
        for s in socks:
            assert await closed_with(s, 8) == (1001, "Going away")
        assert await asyncio.to_thread(dev.proc.wait, 8) == 0  # the report: not stopped within 8 s
        elapsed = time.monotonic() - started
        out = dev.output()
        assert "Stopped." in out and "Traceback" not in out, out
        for conn_id in ids:
            rec = wait_for(lambda: sorted(tmp_path.glob(f"{conn_id}.DISCONNECT.*.json")), 2, what=f"$disconnect of {conn_id}")
            ctx = json.loads(rec[0].read_text())["event"]["requestContext"]
            assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1001, "Going away")
        # workers and moto exit with the gateway (EOF on their stdin), not later
        wait_for(lambda: not _group_pids(dev.proc.pid), 3, what="no process left in the group")
        assert elapsed < 8
    finally:
        dev.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
async def test_ctrl_c_with_many_sockets_open_runs_every_disconnect(tmp_path: Path):
    """Issue 15: Ctrl-C with hundreds of sockets open closes each with 1001 and runs each one's `$disconnect`."""
    n = 200
    dev = small_template_dev(tmp_path)
    try:
        url = (await asyncio.to_thread(dev.read_until, r"Ready on (ws://\S+)")).group(1)
        socks = await asyncio.gather(*(websockets.connect(url, open_timeout=30, compression=None) for _ in range(n)))
        dev.interrupt(whole_group=True)
        codes = await asyncio.gather(*(closed_with(s, 30) for s in socks))
        assert set(codes) == {(1001, "Going away")}
        assert await asyncio.to_thread(dev.proc.wait, 60) == 0
        out = dev.output()
        assert "Stopped." in out and "Traceback" not in out and "Giving up" not in out, out
        records = [json.loads(p.read_text())["event"]["requestContext"] for p in tmp_path.glob("*.DISCONNECT.*.json")]
        assert len({ctx["connectionId"] for ctx in records}) == n
        assert {(ctx["disconnectStatusCode"], ctx["disconnectReason"]) for ctx in records} == {(1001, "Going away")}
    finally:
        dev.kill()


def _environments_of(pgid: int, function: str) -> set[int]:
    """The live execution environments (`worker_main.py` processes) of one function in a process group."""
    pids = set()
    for pid in _group_pids(pgid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 3 and argv[2].endswith(b"worker_main.py") and function.encode() in argv[3]:
            pids.add(pid)
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
async def test_ctrl_c_during_a_storm_starts_no_environment_and_runs_no_queued_invocation(tmp_path: Path):
    """Issue 15: Ctrl-C while a storm of slow messages waits for environments. Shutdown used to go on
    serving that queue (its cold starts included) before the `$disconnect`s could run: after a join
    storm it took over 90 s. Now the queue is dropped, no message environment starts, every socket
    still gets 1001 and its `$disconnect`, and the gateway exits within the handlers' own run time."""
    n, sleep_s = 30, 4.0
    dev = small_template_dev(tmp_path, "--max-concurrency", "8")
    try:
        url = (await asyncio.to_thread(dev.read_until, r"Ready on (ws://\S+)")).group(1)
        socks = await asyncio.gather(*(websockets.connect(url, open_timeout=30, compression=None) for _ in range(n)))
        await asyncio.gather(*(s.send(json.dumps({"action": "echo", "sleep": sleep_s})) for s in socks))
        await asyncio.to_thread(wait_for, lambda: _environments_of(dev.proc.pid, "EchoFunction"), 15, 0.05, "an echo environment")
        await asyncio.sleep(1.0)  # the first echoes run; the rest wait for an environment
        started = time.monotonic()
        dev.interrupt(whole_group=True)
        await asyncio.sleep(0.3)  # a cold start already under way when the signal arrived may still spawn
        before = _environments_of(dev.proc.pid, "EchoFunction")
        after: set[int] = set()
        while dev.proc.poll() is None and time.monotonic() - started < 20:
            after |= _environments_of(dev.proc.pid, "EchoFunction")
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        assert dev.proc.poll() == 0, f"not stopped within {elapsed:.0f} s"
        assert after <= before, f"{len(after - before)} EchoFunction environment(s) started after Ctrl-C"
        assert set(await asyncio.gather(*(closed_with(s, 5) for s in socks))) == {(1001, "Going away")}
        out = dev.output()
        assert "Stopped." in out and "Traceback" not in out and "Giving up" not in out, out
        dropped = re.search(r"\[EchoFunction\] (\d+) invocation\(s\) still waiting for an environment not run", out)
        assert dropped, out
        ran = len(list(tmp_path.glob("*.MESSAGE.*.json")))
        assert ran + int(dropped.group(1)) == n and ran < n  # each echo either ran (it began before Ctrl-C) or was dropped
        assert elapsed < sleep_s + 5  # the running echoes finish (or are stopped); the queue is not served
        disconnects = {json.loads(p.read_text())["event"]["requestContext"]["connectionId"] for p in tmp_path.glob("*.DISCONNECT.*.json")}
        assert len(disconnects) == n
    finally:
        dev.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
async def test_ctrl_c_during_start_up_stops_what_had_started(tmp_path: Path):
    dev = small_template_dev(tmp_path)
    try:
        await asyncio.to_thread(dev.read_until, r"Starting the local gateway")
        await asyncio.sleep(0.3)  # moto and the workers are starting
        dev.interrupt(whole_group=True)
        assert await asyncio.to_thread(dev.proc.wait, 8) == 0
        out = dev.output()
        assert "Start-up interrupted" in out and "Stopped." in out and "Ready on" not in out, out
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
        wait_for(lambda: not _group_pids(dev.proc.pid), 3, what="no process left in the group")
    finally:
        dev.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
async def test_second_ctrl_c_forces_exit_130_and_leaves_nothing_running(tmp_path: Path):
    dev = small_template_dev(tmp_path)
    try:
        url = (await asyncio.to_thread(dev.read_until, r"Ready on (ws://\S+)")).group(1)
        ws = await websockets.connect(url, open_timeout=10)
        await ws.send(json.dumps({"action": "echo", "sleep": 4}))  # the socket's handler is busy
        await asyncio.sleep(0.3)
        dev.interrupt(whole_group=True)
        await asyncio.to_thread(dev.read_until, r"Stopping \(Ctrl-C again to force\)", 5)
        dev.interrupt(whole_group=True)
        assert await asyncio.to_thread(dev.proc.wait, 5) == 130
        assert "Forced exit." in dev.output()
        wait_for(lambda: not _group_pids(dev.proc.pid), 5, what="workers and moto gone after a forced exit")
    finally:
        dev.kill()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
async def test_nothing_outlives_a_killed_gateway(tmp_path: Path):
    """Workers and moto ignore SIGINT/SIGTERM, so they must leave by themselves when the gateway is gone."""
    dev = small_template_dev(tmp_path)
    try:
        url = (await asyncio.to_thread(dev.read_until, r"Ready on (ws://\S+)")).group(1)
        ws = await websockets.connect(url, open_timeout=10)
        await ws.send(json.dumps({"action": "echo", "sleep": 4}))  # a worker busy in a handler
        await asyncio.sleep(0.5)
        os.kill(dev.proc.pid, signal.SIGKILL)  # the gateway alone
        await asyncio.to_thread(dev.proc.wait, 5)
        wait_for(lambda: not _group_pids(dev.proc.pid), 3, what="workers and moto gone with the gateway")
    finally:
        dev.kill()
