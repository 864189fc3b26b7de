"""The default log's cost (issue 15, item 5): `parley dev` with its log and with `--quiet`, both running, measured in alternated blocks.

Why side by side: one run of a row moves by 10-20% with the machine's load (docs/benchmarks.md,
*The log's cost in alternated rounds*), more than the 10% the log may cost, so whole runs one after
another could not tell a 5% cost from noise. Here both trees run at once (each in its own process
group, with its own DynamoDB Local), and every figure is measured in pairs of adjacent blocks, one
block on each tree, swapping which goes first from pair to pair: a pair sees the same machine, and
its ratio (logged over quiet) is one sample of the log's cost. The figures are the peers table's:

- `ping` round trip: `--ping-pairs` pairs of PINGS_PER_BLOCK pings on one connection, p50 of each block;
- time per handshake: `--handshake-pairs` pairs of `--handshakes` connections, 50 in flight, closed after each
  block and both trees left to go quiet before the next;
- joins into a room growing to `--members`, one after another, in blocks of JOIN_WINDOW on one tree
  and then the other: the blocks' median reply times are one pair;
- last delivery of one `chat_message` to that room: `--message-pairs` pairs of one message each.

Every handshake, join and message block starts with both trees idle (`peers_bench.settle`), so that
no block pays for what the other tree, or its own last block, left running.

The pair counts are fixed before a run (a run is never extended until it decides); the cheap figures
get more pairs, since a pair's noise is the same size as the cost being judged. The handshakes got 48
pairs (from 24) after a control run (`--control`: two identical trees) read their "cost" as +3%,
interval -3% to +9%: at 24 pairs the interval is about 12 points wide, too wide to place a cost near
5% on either side of 10%; twice the pairs narrow it by about a third. Decided before the next run.

The verdict per figure comes from the median of its pairs' costs and that median's 95% interval
(order statistics: no assumption about the noise's shape): met when the interval's top is within
10%, not met when its bottom is over 10%, otherwise not decided. CPU per handshake of each whole
tree is shown too: it moves far less with the load than the times do.

    .venv/bin/python benchmarks/log_cost_bench.py [--ping-pairs 64] [--handshake-pairs 48] [--message-pairs 48] [--json FILE]
    .venv/bin/python benchmarks/log_cost_bench.py --control   # both trees with the log: the method's own bias

A control run (`--control`) starts the second tree with the log too, in the quiet tree's place: the
two trees then differ only in which started first and where the kernel put them, so its "cost" is
what the method reads when there is none, and should be decided within a few percent of 0.

Every server listens on a free 127.0.0.1 port and is killed at the end; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import peers_bench as pb

GOAL = 0.10  # the log may cost at most 10% of any figure
PINGS_PER_BLOCK = 200
JOIN_WINDOW = 50
IN_FLIGHT = 50
FIGURES = ("round trip", "time per handshake", "join reply", "last delivery")
MODES = ("parley", "parley-quiet")  # logged, quiet


# ------------------------------------------------------------------ statistics (pure)
def _binomial_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: the order statistics x(k) and x(n+1-k) with the
    largest k whose coverage is at least `confidence` (the sign test's interval). With too few
    values for that coverage, the whole range (-inf, inf): nothing can be concluded."""
    xs, n = sorted(values), len(values)
    k = 0
    while k + 1 <= n // 2 and 1 - 2 * _binomial_cdf(k, n) >= confidence:  # [x(k+1), x(n-k)] still covers enough
        k += 1
    if k == 0:
        return -math.inf, math.inf
    return xs[k - 1], xs[n - k]


def verdict(costs: list[float], goal: float = GOAL) -> str:
    """'met', 'not met' or 'not decided' for one figure's pair costs (ratio - 1)."""
    low, high = median_interval(costs)
    if high <= goal:
        return "met"
    if low > goal:
        return "not met"
    return "not decided"


def overall(verdicts: list[str]) -> str:
    if "not met" in verdicts:
        return "not met"
    return "met" if verdicts and all(v == "met" for v in verdicts) else "not decided"


def summarize(pairs: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, Any]]:
    """Per figure: each pair's (logged, quiet) figure, its cost, the median cost with its interval, the verdict,
    and the median cost of the pairs in each order (`_ordered`: the logged tree first in even pairs). The two
    orders' medians differ by twice whatever going first or second is worth: an order effect widens the
    interval, though the alternation keeps it out of the median."""
    out: dict[str, dict[str, Any]] = {}
    for name, measured in pairs.items():
        kept = [(i, (logged, quiet)) for i, (logged, quiet) in enumerate(measured)
                if math.isfinite(logged) and math.isfinite(quiet) and quiet > 0]
        used = [pair for _, pair in kept]
        costs = [logged / quiet - 1 for logged, quiet in used]
        by_order = {order: [logged / quiet - 1 for i, (logged, quiet) in kept if i % 2 == parity]
                    for order, parity in (("logged first", 0), ("quiet first", 1))}
        low, high = median_interval(costs) if costs else (-math.inf, math.inf)
        out[name] = {"pairs": measured, "used": used, "costs": costs, "median": statistics.median(costs) if costs else math.nan,
                     "low": low, "high": high, "verdict": verdict(costs) if costs else "not decided",
                     "by_order": {order: statistics.median(c) if c else math.nan for order, c in by_order.items()}}
    return out


# ------------------------------------------------------------------ measuring
def _ordered(i: int) -> list[str]:
    """The pair's order: the logged tree first in even pairs, the quiet one in odd pairs."""
    return list(MODES) if i % 2 == 0 else list(MODES[::-1])


@dataclass
class Trees:
    """The two trees, by mode, and every wait for both to go idle (in the JSON: a wait at its bound shows there)."""

    systems: dict[str, pb.System]
    settle_waits: list[float] = field(default_factory=list)
    cpu_blocks: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # each handshake block's CPU by process, kept

    async def settle(self) -> None:
        """Both trees idle before a block: neither block pays for what the other (or its own last one) left running."""
        waits = await asyncio.gather(*(pb.settle(s.proc.pid) for s in self.systems.values()))  # type: ignore[union-attr]
        self.settle_waits.append(max(waits))

    def settled(self) -> dict[str, float]:
        return {"waits": len(self.settle_waits), "longest": max(self.settle_waits, default=0.0), "bound": pb.SETTLE_MAX_S}


BOOKKEEPING = ("threads lost", "processes")  # kept with each block's CPU, not CPU


def make_systems(repo: Path, control: bool = False) -> dict[str, pb.System]:
    """The two trees by mode; in a control run the second runs with the log too, in the quiet tree's place."""
    systems = {key: pb.make_system(key, "local", repo) for key in MODES}
    if control:
        systems[MODES[1]] = dataclasses.replace(pb.make_system(MODES[0], "local", repo), key="parley-control")
    return systems


def cpu_by_process(blocks: list[dict[str, float]], handshakes: int) -> dict[str, float]:
    """Median ms of CPU per handshake of each process label over a tree's blocks (a label absent from a block counts
    as 0). Read in ns (`ThreadCpu`), shown to 1 µs."""
    labels = {label for spent in blocks for label in spent if label not in BOOKKEEPING}
    return {label: round(pb.median([spent.get(label, 0.0) * 1000 / handshakes for spent in blocks]), 3) for label in sorted(labels)}


async def _paired(blocks: int, systems: dict[str, pb.System], measure: Callable[[str], Awaitable[float]],
                  first: int = 0) -> list[tuple[float, float]]:
    """`blocks` pairs of (logged, quiet) figures, the order swapped pair by pair counting from pair `first`."""
    pairs = []
    for i in range(first, first + blocks):
        got = {key: await measure(key) for key in _ordered(i)}
        pairs.append((got["parley"], got["parley-quiet"]))
    return pairs


async def round_trips(trees: Trees, blocks: int) -> list[tuple[float, float]]:
    systems = trees.systems
    clients = {key: await pb.connect(s, "pinger") for key, s in systems.items()}
    for client in clients.values():  # warm: the ping function's cold start is not a round trip
        for _ in range(pb.WARMUP):
            await client.request("ping", {}, "pong", 10)

    async def block(key: str) -> float:
        times = []
        for _ in range(PINGS_PER_BLOCK):
            _, s = await clients[key].request("ping", {}, "pong", 10)
            times.append(s * 1000)
        return statistics.median(times)

    try:
        return await _paired(blocks, systems, block)
    finally:
        await asyncio.gather(*(c.ws.close() for c in clients.values()), return_exceptions=True)


async def handshakes(trees: Trees, blocks: int, n: int) -> tuple[list[tuple[float, float]], dict[str, float], dict[str, dict[str, float]]]:
    """Pairs of seconds per handshake; each tree's CPU per handshake (ms, every process but the client) and
    by process (ms, the client's too), medians over its blocks."""
    systems = trees.systems
    cpu_ms: dict[str, list[float]] = {key: [] for key in systems}
    spent_by_block: dict[str, list[dict[str, float]]] = {key: [] for key in systems}

    async def block(key: str) -> float:
        sid = systems[key].proc.pid  # type: ignore[union-attr]
        await trees.settle()
        urls = pb.handshake_urls(systems[key], n)
        cpu = pb.ThreadCpu(sid)
        sockets, seconds, errors = await pb.open_many(systems[key], urls, IN_FLIGHT)
        spent = cpu.seconds()
        spent_by_block[key].append({**spent, "threads lost": cpu.lost, "processes": cpu.processes})
        cpu_ms[key].append(sum(v for k, v in spent.items() if k != pb.CLIENT_LABEL) * 1000 / max(1, len(sockets)))
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        if errors:
            raise RuntimeError(f"{key}: {errors} of {n} handshakes failed")
        return seconds / n

    # Warm: each function's first environment, and the first `$disconnect`'s DynamoDB client.
    for key, system in systems.items():
        warm, _, _ = await pb.open_many(system, pb.handshake_urls(system, IN_FLIGHT * 2), IN_FLIGHT)
        await asyncio.gather(*(ws.close() for ws in warm), return_exceptions=True)
    pairs = await _paired(blocks, systems, block)
    trees.cpu_blocks = spent_by_block
    return pairs, {key: pb.median(v) for key, v in cpu_ms.items()}, {key: cpu_by_process(v, n) for key, v in spent_by_block.items()}


async def room(trees: Trees, members: int, messages: int, budget_s: float) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Joins in blocks of JOIN_WINDOW, one block on each tree in turn (a pair: the two blocks' median reply
    times; each room grows to `members`), then messages in pairs (one on each tree). Every block starts
    with both trees idle: a join into a room over 100 members hands its `user_joined` to the fan-out
    function, whose work would otherwise land in the other tree's block."""
    systems = trees.systems
    room_id = f"logcost-{int(time.time())}"
    joined: dict[str, list[pb.Client]] = {key: [] for key in systems}
    reply_ms: dict[str, list[float]] = {key: [] for key in systems}
    deadline = time.monotonic() + budget_s
    try:
        async def join_block(key: str) -> float:
            first = len(joined[key])
            await trees.settle()
            times = []
            for i in range(first, first + JOIN_WINDOW):
                client = await pb.connect(systems[key], f"member{i}")
                joined[key].append(client)
                _, s = await client.request("join_room", {"roomId": room_id, "limit": 1}, "chat_history", 60)
                times.append(s * 1000)
            return statistics.median(times)

        joins: list[tuple[float, float]] = []
        for w in range(members // JOIN_WINDOW):
            if time.monotonic() > deadline:
                break
            joins += await _paired(1, systems, join_block, first=w)

        await asyncio.sleep(1.0)  # the last joins' user_joined frames drain
        for key in systems:  # not timed: the fan-out function's cold start
            await joined[key][0].request("chat_message", {"roomId": room_id, "message": "warm-up"}, "chat_update", 60)
        await asyncio.sleep(1.0)
        sent = iter(range(messages * 2))

        async def delivery(key: str) -> float:
            members_ = joined[key]
            await trees.settle()
            t0 = time.perf_counter()
            update, _ = await members_[0].request("chat_message", {"roomId": room_id, "message": f"to everyone {next(sent)}"},
                                                  "chat_update", 60)
            mid = str(update.get("messageId"))
            reached = await pb.wait_until(lambda: all(mid in m.received for m in members_), 60)
            last = (max(m.received[mid] for m in members_) - t0) * 1000 if reached else math.nan
            return last

        deliveries = await _paired(messages, systems, delivery)
        return joins, deliveries
    finally:
        await asyncio.gather(*(c.ws.close() for cs in joined.values() for c in cs), return_exceptions=True)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg(),
                              "pairs": {"ping": args.ping_pairs, "handshake": args.handshake_pairs, "message": args.message_pairs},
                              "handshakes": args.handshakes, "members": args.members}
    trees = Trees(make_systems(args.repo, args.control))
    result["control"] = args.control
    started = list(MODES[::-1] if args.quiet_first else MODES)
    result["started_first"] = started[0]
    try:
        for key in started:
            trees.systems[key].start()
        pairs: dict[str, list[tuple[float, float]]] = {}
        await trees.settle()  # their start-up's last work (DynamoDB Local's tables) is no one's block
        pairs["round trip"] = await round_trips(trees, args.ping_pairs)
        print(f"round trip: {pairs['round trip']}", flush=True)
        (pairs["time per handshake"], result["cpu_per_handshake_ms"],
         result["cpu_per_handshake_by_process_ms"]) = await handshakes(trees, args.handshake_pairs, args.handshakes)
        print(f"handshakes: {pairs['time per handshake']}; CPU ms {result['cpu_per_handshake_ms']}", flush=True)
        if args.members >= JOIN_WINDOW:
            await trees.settle()
            pairs["join reply"], pairs["last delivery"] = await room(trees, args.members, args.message_pairs, args.phase_budget)
            print(f"joins: {pairs['join reply']}\ndeliveries: {pairs['last delivery']}", flush=True)
    finally:
        for system in trees.systems.values():
            system.kill()
    result["figures"] = summarize(pairs)
    result["settled_s"] = trees.settled()
    result["cpu_blocks"] = trees.cpu_blocks
    return result


# ------------------------------------------------------------------ docs/benchmarks.md
def _pct(v: float) -> str:
    return "–" if not math.isfinite(v) else f"{v:+.0%}"


def _by_process_rows(by_process: dict[str, dict[str, float]]) -> list[tuple[str, float, float]]:
    """(label, logged, quiet) for every process label of either tree, the costliest first."""
    logged, quiet = by_process.get(MODES[0], {}), by_process.get(MODES[1], {})
    labels = sorted(set(logged) | set(quiet), key=lambda label: (-max(logged.get(label, 0.0), quiet.get(label, 0.0)), label))
    return [(label, logged.get(label, 0.0), quiet.get(label, 0.0)) for label in labels]


@dataclass(frozen=True)
class Columns:
    """How a section names its two trees and their ratio."""

    first: str
    second: str
    ratio: str
    per_process: str
    orders: str


LOG_COLUMNS = Columns("with the log", "`--quiet`", "the log's cost", "with the log / `--quiet`",
                      "its median by order: the logged block first / the quiet block first")
CONTROL_COLUMNS = Columns("first tree", "second tree", "first over second", "first / second",
                          "its median by order: the first tree's block first / the second's first")


def markdown(d: dict[str, Any], command: str) -> list[str]:
    figures = d["figures"]
    if d.get("control"):
        columns = CONTROL_COLUMNS
        lines = ["## Control: two trees both with the log, side by side (issue 15)", "", "```bash", command, "```", "",
                 "Both trees run with the default log, measured exactly as in the section above. What the method reads "
                 "as a cost here is its own bias between two identical trees.", ""]
    else:
        columns = LOG_COLUMNS
        lines = ["## The default log's cost, both modes side by side (issue 15)", "", "```bash", command, "```", "",
                 "`parley dev` with its default log (one line per invocation) and with `--quiet`, both running, each figure "
                 "measured in pairs of adjacent blocks (one on each, swapping which goes first), so that a pair sees the same "
                 "machine; each pair's ratio is one sample of the log's cost. A figure's cost is the median of its pairs, with "
                 "that median's 95% interval (order statistics); the goal is met when the interval's top is within 10%, not "
                 "met when its bottom is over 10%. Every block but the pings' starts with both trees idle; the joins go in "
                 f"blocks of {JOIN_WINDOW} into a room growing to {d.get('members', 0):,} on each tree.", ""]
    lines += _figure_rows(figures, columns, verdicts=not d.get("control"))
    lines.append("")
    if d.get("started_first") and not d.get("control"):
        first = "the quiet tree (`--quiet-first`)" if d["started_first"] == MODES[1] else "the logged tree"
        lines.append(f"- Started first: {first}. Of two identical trees, the one started first spent about 5% more CPU "
                     "per handshake (a control run, docs/benchmarks.md).")
    cpu = d.get("cpu_per_handshake_ms")
    if cpu:
        first, second = cpu.get(MODES[0], math.nan), cpu.get(MODES[1], math.nan)
        lines.append(f"- CPU per handshake, every process of the tree (median of its blocks): {first:.2f} ms {columns.first}, "
                     f"{second:.2f} ms {columns.second} ({_pct(first / second - 1) if second > 0 else '–'}).")
    by_process = d.get("cpu_per_handshake_by_process_ms")
    if by_process:
        lines.append(f"- By process (ms per handshake, median of the blocks; {columns.per_process}): " + "; ".join(
            f"{label} {first:.3f} / {second:.3f}" for label, first, second in _by_process_rows(by_process)) + ".")
    if not d.get("control"):
        result = overall([figures[n]["verdict"] if n in figures else "not decided" for n in FIGURES])
        lines.append(f"- Goal (issue 15): the default log costs at most 10% of any figure above: **{result}**.")
    return lines + [""]


def _figure_rows(figures: dict[str, dict[str, Any]], columns: Columns, verdicts: bool = True) -> list[str]:
    lines = [f"| figure | pairs | {columns.first} (median of its blocks) | {columns.second} | {columns.ratio}: median [95% interval] "
             f"| {columns.orders} |" + (" verdict |" if verdicts else ""),
             "| --- | ---: | ---: | ---: | ---: | ---: |" + (" --- |" if verdicts else "")]
    units = {"round trip": ("ms, p50 of %d pings" % PINGS_PER_BLOCK, 1.0), "time per handshake": ("ms", 1000.0),
             "join reply": (f"ms, median of {JOIN_WINDOW} joins", 1.0), "last delivery": ("ms", 1.0)}
    for name in FIGURES:
        f = figures.get(name)
        if f is None:
            lines.append(f"| {name} | 0 | – | – | not measured | – |" + (" not decided |" if verdicts else ""))
            continue
        unit, scale = units[name]
        used = f.get("used", f["pairs"])
        first = pb.median([p[0] * scale for p in used])
        second = pb.median([p[1] * scale for p in used])
        dropped = len(f["pairs"]) - len(used)
        count = f"{len(used)}" + (f" ({dropped} failed, left out)" if dropped else "")
        order = f.get("by_order", {})
        lines.append(f"| {name} | {count} | {first:.2f} {unit} | {second:.2f} | {_pct(f['median'])} "
                     f"[{_pct(f['low'])}, {_pct(f['high'])}] | {_pct(order.get('logged first', math.nan))} / "
                     f"{_pct(order.get('quiet first', math.nan))} |" + (f" {f['verdict']} |" if verdicts else ""))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ping-pairs", type=int, default=64, help=f"pairs of blocks of {PINGS_PER_BLOCK} pings")
    parser.add_argument("--handshake-pairs", type=int, default=48, help="pairs of blocks of --handshakes connections")
    parser.add_argument("--message-pairs", type=int, default=48, help="pairs of messages to the room")
    parser.add_argument("--handshakes", type=int, default=500, help="connections per handshake block")
    parser.add_argument("--members", type=int, default=1000, help="members of each tree's room (0: no room figures)")
    parser.add_argument("--phase-budget", type=float, default=240.0, help="seconds the joins may take")
    parser.add_argument("--repo", type=Path, default=pb.REPO, help="run `parley dev` from this checkout")
    parser.add_argument("--control", action="store_true", help="both trees with the log: the method's own bias (should be ~0)")
    parser.add_argument("--quiet-first", action="store_true",
                        help="start the quiet tree first (the first-started tree spent ~5%% more CPU per handshake in a control)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print("\n".join(markdown(result, "log_cost_bench.py")))


if __name__ == "__main__":
    main()
