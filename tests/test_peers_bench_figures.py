"""The peers table's CPU per handshake: what the goal of 1,000 handshakes/s needs, from the open row's meter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from parley_testing.bench_scripts import benchmark_scripts


@pytest.fixture(scope="module")
def peers_bench():
    with benchmark_scripts("dev_process", "peers_bench") as (_, module):
        yield module


def _system(cpu_s: dict[str, float] | None, opened: int = 1000) -> dict:
    open_row = {"n": 1000, "opened": opened, "errors": 0, "per_s": 500.0}
    if cpu_s is not None:
        open_row["cpu_s"] = cpu_s
    return {"open": open_row}


def test_the_server_is_every_process_but_the_client(peers_bench):
    system = _system({"gateway": 1.2, "AuthorizerFunction": 0.6, "ConnectFunction": 0.4, "benchmark client": 0.8}, opened=800)
    server, client = peers_bench.handshake_cpu_ms(system)
    assert server == pytest.approx(2.75) and client == pytest.approx(1.0)


def test_the_ceiling_is_the_cores_over_both_sides_cpu(peers_bench):
    system = _system({"node": 0.6, "benchmark client": 0.4})
    assert "2 cores allow at most 2,000/s" in peers_bench._ceiling(system, 2)


def test_results_without_the_meter_or_without_a_connection_say_nothing(peers_bench):
    assert peers_bench.handshake_cpu_ms(_system(None)) is None
    assert peers_bench.handshake_cpu_ms(_system({"gateway": 1.0}, opened=0)) is None
    assert peers_bench._ceiling(_system(None), 2) == ""


def test_a_systems_output_is_counted_once_per_line_and_only_when_complete(peers_bench, tmp_path: Path):
    """The disconnect count is polled every 10 ms while a room leaves: each look reads only what is new,
    and a line the system is still writing is not matched until its newline arrives."""
    import re

    path = tmp_path / "out.log"
    log = peers_bench.OutputLog(path)
    pattern = re.compile(r'"message":"disconnected"')
    assert log.count(pattern) == 0  # nothing written yet: not even the file
    with open(path, "w") as sink:
        sink.write('{"message":"disconnected"}\n{"message":"conn')
        sink.flush()
        assert log.count(pattern) == 1
        assert log.count(pattern) == 1  # asked again: not counted twice
        sink.write('ected"}\n{"message":"disconnected"}\n{"message":"disconnec')
        sink.flush()
        assert log.count(pattern) == 2
        sink.write('ted"}\n')
        sink.flush()
        assert log.count(pattern) == 3
    assert [line.rstrip("\n") for line in log.read()][1] == '{"message":"connected"}'
    log.close()


def test_rounds_alternate_which_mode_goes_first_and_run_the_peers_once(peers_bench):
    order = peers_bench.run_order(["parley", "parley-quiet", "sls", "flask"], 3)
    assert order == ["parley", "parley-quiet", "sls", "flask", "parley-quiet", "parley", "parley", "parley-quiet"]
    assert peers_bench.run_order(["sls", "parley"], 2) == ["parley", "sls", "parley"]
    assert peers_bench.run_order(["flask"], 0) == ["flask"]


def _run(per_s: float, rtt: float = 0.5, joins: float = 10.0, fanout: float = 200.0) -> dict:
    return {"rtt_p50_ms": rtt, "open": {"per_s": per_s}, "joins": {"last_ms": joins}, "fanout": {"last_ms": fanout}}


def test_the_column_is_the_whole_run_with_the_median_handshake_rate(peers_bench):
    runs = [_run(900, rtt=0.9), _run(1100, rtt=0.4), _run(1000, rtt=0.7)]
    assert peers_bench.median_run(runs) is runs[2]
    assert peers_bench.median_run(runs[:2]) is runs[0]  # an even count: the lower middle one


def test_the_logs_cost_is_paired_by_round_and_judged_on_every_round(peers_bench):
    # Round trip: 20%, 0% and 5% over the quiet run of the same round: the rounds straddle the goal.
    logged = [_run(1000, rtt=0.6), _run(800, rtt=0.5), _run(950, rtt=0.42)]
    quiet = [_run(1000, rtt=0.5), _run(1000, rtt=0.5), _run(950, rtt=0.4)]
    d = {"systems": {"parley": logged[0], "parley-quiet": quiet[0]}, "rounds": {"parley": logged, "parley-quiet": quiet}}
    costs = peers_bench.log_cost(d)
    assert costs["round trip"] == pytest.approx([0.2, 0.0, 0.05])
    assert costs["time per handshake"] == pytest.approx([0.0, 0.25, 0.0])  # 800/s against 1,000/s is 25% more time each
    line = peers_bench.log_cost_line(d)
    assert "median of 3 alternated rounds" in line and "round trip +5% (+0% to +20%)" in line
    assert "**not decided**" in line  # a median of +5% inside rounds up to +20% decides nothing
    for run in logged:  # every round of the joins 20% over: not met, whatever the others say
        run["joins"]["last_ms"] = 12.0
    assert "**not met**" in peers_bench.log_cost_line(d)


def test_the_log_is_within_the_goal_only_when_every_round_is(peers_bench):
    logged = [_run(1000, rtt=0.52), _run(960, rtt=0.5)]
    quiet = [_run(1000, rtt=0.5), _run(1000, rtt=0.5)]
    d = {"systems": {"parley": logged[0], "parley-quiet": quiet[0]}, "rounds": {"parley": logged, "parley-quiet": quiet}}
    assert "**met**" in peers_bench.log_cost_line(d)
    assert peers_bench.log_cost_verdict([0.02, 0.11]) == "either" and peers_bench.log_cost_verdict([0.11, 0.3]) == "over"


def test_a_figure_no_round_measured_is_said_and_decides_nothing(peers_bench):
    logged, quiet = _run(1000, rtt=0.5), _run(1000, rtt=0.5)
    logged["fanout"]["last_ms"] = float("nan")  # no message reached every member
    d = {"systems": {"parley": logged, "parley-quiet": quiet}}
    line = peers_bench.log_cost_line(d)
    assert "last delivery not measured" in line and "nan" not in line and "**not decided**" in line


def test_one_run_of_each_is_judged_as_it_stands(peers_bench):
    d = {"systems": {"parley": _run(1000, rtt=0.54), "parley-quiet": _run(1000, rtt=0.5)}}
    line = peers_bench.log_cost_line(d)
    assert "one run of each" in line and "round trip +8%" in line and "**met**" in line
    assert peers_bench.rounds_line(d) == ""


def _burner(busy_s: float, in_a_thread: bool = False):
    """A process in a session of its own that spins `busy_s` seconds on one CPU (in its main thread, or in
    another one as DynamoDB Local's JVM works), then sleeps."""
    spin = f"def spin():\n    t = time.monotonic()\n    while time.monotonic() - t < {busy_s}: pass\n"
    run = "threading.Thread(target=spin).start()\n" if in_a_thread else "spin()\n"
    code = "import threading, time\n" + spin + run + "time.sleep(30)"
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


@pytest.mark.parametrize("in_a_thread", [False, True], ids=["main thread", "another thread"])
def test_a_row_starts_once_the_system_has_gone_quiet(peers_bench, in_a_thread: bool):
    proc = _burner(0.8, in_a_thread)
    try:
        waited = asyncio.run(peers_bench.settle(proc.pid, window_s=0.1, max_s=5.0))
        assert 0.6 <= waited < 3.0  # the spin's leftover, not the bound
        assert asyncio.run(peers_bench.settle(proc.pid, window_s=0.1, max_s=5.0)) < 0.5  # idle now: one window
    finally:
        proc.kill()
        proc.wait()


def test_a_system_that_never_goes_quiet_is_waited_for_at_most_the_bound(peers_bench):
    proc = _burner(30)
    try:
        waited = asyncio.run(peers_bench.settle(proc.pid, window_s=0.1, max_s=0.8))
        assert 0.8 <= waited < 1.5
    finally:
        proc.kill()
        proc.wait()


def test_spent_by_label_sums_threads_per_process_and_counts_a_new_thread_whole(peers_bench):
    pb = peers_bench
    before = {(10, 10): 1_000_000, (10, 11): 500_000, (20, 20): 0}
    after = {(10, 10): 3_000_000, (10, 11): 1_500_000, (20, 20): 2_000_000, (20, 21): 250_000, (30, 30): 1_000_000}
    labels = {10: "gateway", 20: "DynamoDB Local (JVM)", 30: "ConnectFunction"}
    assert pb.spent_by_label(before, after, labels) == pytest.approx({"gateway": 0.003, "DynamoDB Local (JVM)": 0.00225,
                                                                     "ConnectFunction": 0.001})


SPIN_ON_GO = """
import sys, threading, time
def spin():
    t0 = time.process_time()
    t = time.monotonic()
    while time.monotonic() - t < 0.3:
        pass
    print(time.process_time() - t0, flush=True)  # the CPU the spin took, as this process counts it
    time.sleep(30)
print("ready", flush=True)
sys.stdin.readline()
{start}
"""


@pytest.mark.parametrize("in_a_thread", [False, True], ids=["main thread", "another thread"])
def test_thread_cpu_reads_a_spin_to_the_millisecond_in_any_thread(peers_bench, in_a_thread: bool):
    """A spin reads as the CPU the spinning process counts for itself, within 3 ms (ticks would be off by up to
    10 ms), in its main thread or in another one (a process's own schedstat counts its main thread only)."""
    start = "threading.Thread(target=spin).start()" if in_a_thread else "spin()"
    proc = subprocess.Popen([sys.executable, "-c", SPIN_ON_GO.format(start=start)], start_new_session=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"  # its start-up is over
        cpu = peers_bench.ThreadCpu(proc.pid)  # the child waits on its stdin: it spends nothing until "go"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        spun = float(proc.stdout.readline())
        spent = cpu.seconds()
        server = sum(v for k, v in spent.items() if k != peers_bench.CLIENT_LABEL)
        assert spun > 0.05 and abs(server - spun) < 0.003, (spun, spent)
    finally:
        proc.kill()
        proc.wait()


def test_the_open_row_times_the_handshakes_and_hands_back_live_sockets(peers_bench):
    """Real sockets: each URL is opened once, a refused one is counted and the rest still open; the
    sockets come back unread, so the caller starts their readers after its CPU reading."""
    from websockets.asyncio.server import serve

    from parley_local.ports import free_port

    async def run() -> tuple[list, float, int, list[str]]:
        paths: list[str] = []

        async def echo(ws) -> None:
            paths.append(ws.request.path)
            async for msg in ws:
                await ws.send(msg)

        async with serve(echo, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            system = peers_bench.System.__new__(peers_bench.System)
            system.wire, system.url = peers_bench.ParleyWire(), f"ws://127.0.0.1:{port}/local"
            urls = peers_bench.handshake_urls(system, 5) + [f"ws://127.0.0.1:{free_port()}/refused"]  # nothing listens
            sockets, seconds, errors = await peers_bench.open_many(system, urls, 2)
            clients = [peers_bench.Client(ws, system.wire) for ws in sockets]
            await clients[0].ws.send('{"type": "pong", "data": {"n": 1}}')
            got = await asyncio.wait_for(clients[0].replies.get(), 5)
            await asyncio.gather(*(c.ws.close() for c in clients))
            return sockets, seconds, errors, paths + [got[0]]

    sockets, seconds, errors, seen = asyncio.run(run())
    assert len(sockets) == 5 and errors == 1 and seconds > 0
    paths, echoed = seen[:-1], seen[-1]
    assert sorted(paths) == sorted(set(paths)) and len(paths) == 5  # one handshake per URL, each user's own token
    assert all(p.startswith("/local?token=") for p in paths)
    assert echoed == "pong"  # a Client wrapped after the row reads its socket


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except FileNotFoundError:
        return []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("relay", [False, True])
def test_the_process_echoes_answer_each_frame_as_sent_and_only_the_relay_has_a_worker(peers_bench, relay):
    """The round-trip row's floors: the relay must really cross a worker process, and nothing may outlive the row."""
    import websockets.sync.client

    frames = ['{"type": "ping", "data": {}}', '{"type":"chat","data":{"text":"héllo ✓"}}', "x" * 70_000]
    with peers_bench.echo_server(relay) as (port, server):
        workers = _children(server)
        with websockets.sync.client.connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
            for frame in frames:
                ws.send(frame)
                assert ws.recv(timeout=10) == frame
    assert len(workers) == (1 if relay else 0)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in [server, *workers]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in [server, *workers])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_the_handler_floor_runs_parleys_real_ping_handler_in_the_servers_own_process(peers_bench):
    """The fourth floor must be the real handler (a pong with a fresh timestamp, an error frame for bad input),
    served without a worker process."""
    import json

    import websockets.sync.client

    with peers_bench.handler_server() as (port, server):
        workers = _children(server)
        with websockets.sync.client.connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            ws.send('{"type": "ping", "data": {}}')
            pong = json.loads(ws.recv(timeout=20))
            ws.send('{"type": "ping", "data": []}')
            refused = json.loads(ws.recv(timeout=20))
    assert pong["type"] == "pong" and pong["data"]["timestamp"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 60))
    assert refused["type"] == "error" and refused["data"]["code"] == "validation_error"
    assert workers == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_the_line_against_serverless_offline_names_the_rows_won_and_lost(peers_bench):
    line = peers_bench.sls_line({"round trip": True, "handshakes/s": False, "last joins": True, "last delivery": True})
    assert line == ("- Against serverless-offline: faster on 3 of the 4 timed rows (round trip, last joins, last delivery); "
                    "slower on handshakes/s.")
    assert peers_bench.sls_line({"round trip": True, "handshakes/s": True}) == (
        "- Against serverless-offline: faster on 2 of the 2 timed rows (round trip, handshakes/s).")
    assert peers_bench.sls_line({"round trip": False}) == "- Against serverless-offline: faster on 0 of the 1 timed rows; slower on round trip."
