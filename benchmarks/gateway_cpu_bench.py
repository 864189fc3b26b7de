"""The local gateway's own CPU per Lambda invocation: per `ping` round trip and per handshake.

Why CPU and not rates: on a 2-core machine shared by the client, the gateway, the functions'
environments and DynamoDB Local, rates move with whatever else runs; the CPU the gateway process
spends per operation does not, and it is what its own code (event building, the worker pipe,
asyncio turns) decides. Each checkout given with `--repo` runs `parley dev --quiet` in turn, the
checkouts alternated `--rounds` times so a before/after pair shares the machine's noise, their order
turned each round (`checkouts.in_turn`: an even `--rounds` puts each first equally often):

- its idle rate over `--idle` seconds (the stream polls and the code watcher), subtracted below;
- `--pings` `ping` frames on one socket, one after another: gateway CPU per ping, the mean round trip,
  and what the `ping` function's environment and this client spent per ping (every thread's schedstat,
  not net of idle): the whole chain a round trip waits on;
- `--handshakes` connections (authorizer and `$connect`), `--in-flight` at a time, then all closed
  (`$disconnect`) and `--settle` seconds for the closes: gateway CPU per connection, and how many
  opened per second (the tokens minted before).

Once per round, before the checkouts, the same pings go to the floor of that chain: an echo relayed
through a worker process (`peers_bench.echo_server`, aiohttp on uvloop as the gateway, a line on a
pipe each way and nothing parsed). Its round trip and its server's, worker's and client's CPU per ping
say how much of a `ping`'s cost is the process model itself (two hops each way, as on Lambda) and how
much is Parley's own code on either side of them.

    .venv/bin/python benchmarks/gateway_cpu_bench.py [--repo . --repo /tmp/before] [--rounds 3]

Every server listens on a free 127.0.0.1 port and is killed at the end; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import websockets

from checkouts import in_turn  # beside this script
from dev_process import running_dev
from parley_local.tokens import make_token
from peers_bench import CLIENT_LABEL, ThreadCpu, _cpu_s, _threads_run_ns, echo_server, spent_by_label

REPO = Path(__file__).resolve().parents[1]
STEP_TIMEOUT_S = 120.0
# The `ping` route's function in Parley's template. Not every function's environment: the gateway starts
# the others' ahead of their first invocation (preinitialize) while the pings run, imports and all.
PING_FUNCTION = "PingFunction"


async def _pings(url: str, pid: int, n: int, idle_per_s: float) -> tuple[float, float, dict[str, float]]:
    """(gateway CPU µs per ping net of idle, round trip µs, every process's CPU µs per ping by label: the
    client's and the `ping` function's environment's too, not net of idle)."""
    async with websockets.connect(f"{url}?token={make_token('bench-ping', 'Ping', 3600)}", compression=None) as ws:
        await _ping_loop(ws, WARM_PINGS)
        by_process = ThreadCpu(pid)
        cpu = _cpu_s(pid)
        elapsed = await _ping_loop(ws, n)
        spent = _cpu_s(pid) - cpu - idle_per_s * elapsed
        per_ping = {label: s * 1e6 / n for label, s in by_process.seconds().items() if s * 1e6 / n >= 1}
    return spent / n * 1e6, elapsed / n * 1e6, per_ping


PING_FRAME = json.dumps({"type": "ping", "data": {}})
WARM_PINGS = 200  # before any measured block: the environment started, its first calls made


async def _ping_loop(ws: websockets.ClientConnection, n: int) -> float:
    """Seconds for `n` pings one after another."""
    start = time.perf_counter()
    for _ in range(n):
        await ws.send(PING_FRAME)
        await ws.recv()
    return time.perf_counter() - start


def measure_floor(args: argparse.Namespace) -> dict[str, float]:
    """The ping chain with nothing in it: round trip µs, and CPU µs per ping of the relay's server, its worker
    and this client (every thread's schedstat)."""
    with echo_server(relay=True) as (port, server):
        with open(f"/proc/{server}/task/{server}/children") as f:
            labels = {server: "server", **{int(pid): "worker" for pid in f.read().split()}}

        async def run() -> dict[str, float]:
            async with websockets.connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
                await _ping_loop(ws, WARM_PINGS)
                before, client = _threads_run_ns(list(labels)), time.process_time()
                elapsed = await _ping_loop(ws, args.pings)
                spent = spent_by_label(before, _threads_run_ns(list(labels)), labels)
                client = time.process_time() - client
            per = lambda s: s * 1e6 / args.pings  # noqa: E731
            return {"rtt_us": per(elapsed), "server_us": per(spent.get("server", 0.0)), "worker_us": per(spent.get("worker", 0.0)),
                    "client_us": per(client)}

        return asyncio.run(asyncio.wait_for(run(), STEP_TIMEOUT_S))


async def _handshakes(url: str, pid: int, n: int, in_flight: int, settle_s: float, idle_per_s: float) -> tuple[float, float]:
    """(gateway CPU µs per connection (opened, then closed and its `$disconnect` run) net of idle, connections
    opened per second)."""
    urls = [f"{url}?token={make_token(f'bench-{i}', f'B{i}', 3600)}" for i in range(n)]
    gate, sockets = asyncio.Semaphore(in_flight), []

    async def open_one(u: str) -> None:
        async with gate:
            sockets.append(await websockets.connect(u, compression=None))

    cpu, start = _cpu_s(pid), time.perf_counter()
    await asyncio.gather(*(open_one(u) for u in urls))
    opened_s = time.perf_counter() - start
    await asyncio.gather(*(s.close() for s in sockets))
    await asyncio.sleep(settle_s)
    spent = _cpu_s(pid) - cpu - idle_per_s * (time.perf_counter() - start)
    return spent / n * 1e6, n / opened_s


def measure(repo: Path, args: argparse.Namespace) -> dict[str, float]:
    with running_dev(repo) as (proc, url):
        time.sleep(2.0)
        cpu = _cpu_s(proc.pid)
        time.sleep(args.idle)
        idle_per_s = (_cpu_s(proc.pid) - cpu) / args.idle

        async def run() -> dict[str, float]:
            ping_cpu, rtt, per_ping = await asyncio.wait_for(_pings(url, proc.pid, args.pings, idle_per_s), STEP_TIMEOUT_S)
            hs_cpu, per_s = await asyncio.wait_for(
                _handshakes(url, proc.pid, args.handshakes, args.in_flight, args.settle, idle_per_s), STEP_TIMEOUT_S)
            return {"idle_ms_per_s": idle_per_s * 1000, "ping_cpu_us": ping_cpu, "rtt_us": rtt, "handshake_cpu_us": hs_cpu,
                    "ping_env_us": per_ping.get(PING_FUNCTION, 0.0), "ping_client_us": per_ping.get(CLIENT_LABEL, 0.0), "handshakes_per_s": per_s}

        return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, action="append", help="a checkout with its own .venv or this one's (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pings", type=int, default=4000)
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds over which the idle rate is measured")
    parser.add_argument("--settle", type=float, default=12.0, help="seconds after the closes for their $disconnects")
    args = parser.parse_args()
    repos = [r.resolve() for r in (args.repo or [REPO])]
    print(f"gateway CPU per invocation, parley dev --quiet: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
          flush=True)
    runs: dict[Path, list[dict[str, float]]] = {r: [] for r in repos}
    floors: list[dict[str, float]] = []
    for n in range(1, args.rounds + 1):
        floor = measure_floor(args)
        floors.append(floor)
        print(f"round {n}  floor (an echo relayed through a worker process): round trip {floor['rtt_us']:.0f} µs; CPU per ping: "
              f"server {floor['server_us']:.0f} µs, worker {floor['worker_us']:.0f} µs, the client {floor['client_us']:.0f} µs",
              flush=True)
        for repo in in_turn(repos, n):
            got = measure(repo, args)
            runs[repo].append(got)
            print(f"round {n}  {repo}: ping {got['ping_cpu_us']:.0f} µs CPU (round trip {got['rtt_us']:.0f} µs; its "
                  f"environment {got['ping_env_us']:.0f} µs, the client {got['ping_client_us']:.0f} µs), connection "
                  f"{got['handshake_cpu_us']:.0f} µs CPU, {got['handshakes_per_s']:.0f} opened/s, idle "
                  f"{got['idle_ms_per_s']:.1f} ms/s", flush=True)
    base = repos[-1]
    for repo in repos:
        line = []
        for key, label, unit in (("ping_cpu_us", "ping", "µs"), ("rtt_us", "round trip", "µs"),
                                 ("ping_env_us", "ping's environment", "µs"), ("ping_client_us", "ping's client", "µs"),
                                 ("handshake_cpu_us", "connection", "µs"), ("handshakes_per_s", "opened", "/s")):
            mid = statistics.median(r[key] for r in runs[repo])
            ratio = statistics.median(a[key] / b[key] for a, b in zip(runs[repo], runs[base]))
            line.append(f"{label} {mid:.0f} {unit} ({ratio:.2f}x {base.name} per round)")
        print(f"{repo}: median " + ", ".join(line), flush=True)
    mid = {key: statistics.median(f[key] for f in floors) for key in floors[0]}
    print(f"floor: median round trip {mid['rtt_us']:.0f} µs; CPU per ping: server {mid['server_us']:.0f} µs, worker "
          f"{mid['worker_us']:.0f} µs, the client {mid['client_us']:.0f} µs", flush=True)
    for repo in repos:
        over = {key: statistics.median(r[ours] - f[floor] for r, f in zip(runs[repo], floors))
                for key, ours, floor in (("rtt", "rtt_us", "rtt_us"), ("gateway", "ping_cpu_us", "server_us"),
                                         ("env", "ping_env_us", "worker_us"), ("client", "ping_client_us", "client_us"))}
        print(f"{repo}: over the floor, median of the rounds' differences: round trip {over['rtt']:+.0f} µs; CPU per ping: "
              f"gateway {over['gateway']:+.0f} µs, the `ping` environment {over['env']:+.0f} µs, the client "
              f"{over['client']:+.0f} µs", flush=True)


if __name__ == "__main__":
    main()
