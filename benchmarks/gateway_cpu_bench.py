"""The local gateway's own CPU per Lambda invocation: per `ping` round trip and per handshake.

Why CPU and not rates: on a 2-core machine shared by the client, the gateway, the functions'
environments and DynamoDB Local, rates move with whatever else runs; the CPU the gateway process
spends per operation does not, and it is what its own code (event building, the worker pipe,
asyncio turns) decides. Each checkout given with `--repo` runs `parley dev --quiet` in turn, the
checkouts alternated `--rounds` times so a before/after pair shares the machine's noise:

- its idle rate over `--idle` seconds (the stream polls and the code watcher), subtracted below;
- `--pings` `ping` frames on one socket, one after another: gateway CPU per ping, the mean round trip,
  and what the `ping` function's environment and this client spent per ping (every thread's schedstat,
  not net of idle): the whole chain a round trip waits on;
- `--handshakes` connections (authorizer and `$connect`), `--in-flight` at a time, then all closed
  (`$disconnect`) and `--settle` seconds for the closes: gateway CPU per connection, and how many
  opened per second (the tokens minted before).

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

from dev_process import running_dev  # beside this script
from parley_local.tokens import make_token
from peers_bench import CLIENT_LABEL, ThreadCpu, _cpu_s

REPO = Path(__file__).resolve().parents[1]
STEP_TIMEOUT_S = 120.0
# The `ping` route's function in Parley's template. Not every function's environment: the gateway starts
# the others' ahead of their first invocation (preinitialize) while the pings run, imports and all.
PING_FUNCTION = "PingFunction"


async def _pings(url: str, pid: int, n: int, idle_per_s: float) -> tuple[float, float, dict[str, float]]:
    """(gateway CPU µs per ping net of idle, round trip µs, every process's CPU µs per ping by label: the
    client's and the `ping` function's environment's too, not net of idle)."""
    async with websockets.connect(f"{url}?token={make_token('bench-ping', 'Ping', 3600)}", compression=None) as ws:
        frame = json.dumps({"type": "ping", "data": {}})
        for _ in range(200):  # warm: the environment started, its first calls made
            await ws.send(frame)
            await ws.recv()
        by_process = ThreadCpu(pid)
        cpu, start = _cpu_s(pid), time.perf_counter()
        for _ in range(n):
            await ws.send(frame)
            await ws.recv()
        elapsed = time.perf_counter() - start
        spent = _cpu_s(pid) - cpu - idle_per_s * elapsed
        per_ping = {label: s * 1e6 / n for label, s in by_process.seconds().items() if s * 1e6 / n >= 1}
    return spent / n * 1e6, elapsed / n * 1e6, per_ping


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
    for n in range(1, args.rounds + 1):
        for repo in repos:
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


if __name__ == "__main__":
    main()
