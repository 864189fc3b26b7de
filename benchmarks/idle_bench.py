"""What an idle `parley dev` costs: CPU per second of its process tree with no client, by process.

Why: a developer leaves `parley dev` running all day, so what it spends doing nothing (the stream
mappings' polls, four a second per shard as Lambda's; the code watcher; timers) is paid by their
laptop's battery and fans. Each checkout given with `--repo` is started in turn (`--quiet`, its
own session, a free 127.0.0.1 port), left `--settle` seconds after its ready line, then measured
over `--window` seconds; `--rounds` alternates them, so a before/after pair shares the machine's
noise. Every process is killed at the end.

    .venv/bin/python benchmarks/idle_bench.py [--repo . --repo /tmp/main-before] [--rounds 2] [--window 20]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
from pathlib import Path

from checkouts import in_turn  # beside this script
from dev_process import running_dev
from peers_bench import _cpu_s, _process_label, session_tree

REPO = Path(__file__).resolve().parents[1]


def measure(repo: Path, settle_s: float, window_s: float) -> dict[str, float]:
    """CPU ms per second of each kind of process in `repo`'s idle `parley dev`, and `total`."""
    with running_dev(repo) as (proc, _):
        time.sleep(settle_s)
        pids = session_tree(proc.pid)
        before = {pid: _cpu_s(pid) for pid in pids}
        time.sleep(window_s)
        spent: collections.Counter[str] = collections.Counter()
        for pid in pids:
            spent[_process_label(pid)] += max(0.0, _cpu_s(pid) - before[pid]) * 1000 / window_s
        spent["total"] = sum(spent.values())
        return dict(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, action="append", help="a checkout with its own .venv or this one's (repeatable)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the ready line before measuring")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured")
    args = parser.parse_args()
    repos = [r.resolve() for r in (args.repo or [REPO])]
    print(f"idle parley dev (--quiet, no client): CPU ms per second over {args.window:.0f} s, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    totals: dict[Path, list[float]] = {r: [] for r in repos}
    for n in range(1, args.rounds + 1):
        for repo in in_turn(repos, n):
            spent = measure(repo, args.settle, args.window)
            totals[repo].append(spent["total"])
            parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if k != "total")
            print(f"round {n}  {repo}: {spent['total']:.1f} ms/s ({parts})", flush=True)
    if len(repos) > 1:
        base = statistics.median(totals[repos[-1]])
        for repo in repos:
            mid = statistics.median(totals[repo])
            print(f"{repo}: median {mid:.1f} ms/s, {mid / base:.2f}x {repos[-1]}", flush=True)


if __name__ == "__main__":
    main()
