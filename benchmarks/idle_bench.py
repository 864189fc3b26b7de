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
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from peers_bench import _cpu_s, _process_label, free_port, session_tree  # beside this script

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 60.0


def measure(repo: Path, settle_s: float, window_s: float) -> dict[str, float]:
    """CPU ms per second of each kind of process in `repo`'s idle `parley dev`, and `total`."""
    python = repo / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), "-m", "parley_local.cli", "dev", "--quiet",
           "--port", str(free_port()), "--stack-name", f"idle{os.getpid()}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded: the process ends or prints its ready line
            if "Ready on" in line:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{repo}: no ready line within {READY_TIMEOUT_S:.0f} s")
        else:
            raise RuntimeError(f"{repo}: parley dev exited before it was ready (status {proc.wait()})")
        time.sleep(settle_s)
        pids = session_tree(proc.pid)
        before = {pid: _cpu_s(pid) for pid in pids}
        time.sleep(window_s)
        spent: collections.Counter[str] = collections.Counter()
        for pid in pids:
            spent[_process_label(pid)] += max(0.0, _cpu_s(pid) - before[pid]) * 1000 / window_s
        spent["total"] = sum(spent.values())
        return dict(spent)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)


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
        for repo in repos:
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
