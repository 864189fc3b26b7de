"""CPU of reading one client frame in the chat core (`protocol.parse_envelope`), by kind of frame.

Every frame a sender sends is read once by the function its route runs (`ChatService.handle_frame`),
on Lambda and under `parley dev` alike, so its cost is paid per chat message. Each checkout given
with `--repo` (its layer, `layers/common/python`) is timed in a process of its own, the checkouts
taking rounds in turn; the figure is CPU time (process time) per frame, the median round, and the
median of the per-round ratios to the last checkout.

    .venv/bin/python benchmarks/frame_parse_bench.py --repo . --repo /tmp/before [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from checkouts import add_repo_argument, chosen_repos, in_turn, run_in

FRAMES = {
    "ping": '{"type":"ping","data":{}}',
    "30 KB ASCII with quotes and newlines": json.dumps(
        {"type": "chat_message", "data": {"roomId": "general", "message": ('say "hi"\n' + "x" * 100) * 270}}),
    "20 KB of é, as browsers send it": json.dumps(
        {"type": "chat_message", "data": {"roomId": "general", "message": "é" * 10000}}, ensure_ascii=False),
    "30 KB of é, escaped as Python's json sends it": json.dumps(
        {"type": "chat_message", "data": {"roomId": "general", "message": "é" * 5000}}),
    "16,000 numbers in a list": json.dumps({"type": "message", "data": {"message": "a", "junk": [0] * 16000}}),
    "objects 1,990 deep": '{"type":"message","data":' + '{"a":' * 1990 + "{}" + "}" * 1990 + "}",
}

# Run in the checkout (its own interpreter, its own layer, as its tests import it): one JSON line of µs per frame.
CHILD = """
import json, sys, time
from parley_testing.functions import import_the_layer
import_the_layer()
from parley.core.protocol import parse_envelope
frames, calls = json.loads(sys.stdin.read()), int(sys.argv[1])
out = {}
for name, text in frames.items():
    n = max(20, calls * 25 // max(25, len(text) // 100))  # fewer calls of the big frames
    for _ in range(n // 10):
        parse_envelope(text)
    start = time.process_time()
    for _ in range(n):
        parse_envelope(text)
    out[name] = (time.process_time() - start) / n * 1e6
print(json.dumps(out))
"""


def measure(repo: Path, calls: int) -> dict[str, float]:
    return run_in(repo, CHILD, str(calls), stdin=json.dumps(FRAMES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_argument(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per round for a ping-sized frame (fewer for big ones)")
    args = parser.parse_args()
    repos = chosen_repos(args)
    runs: dict[Path, list[dict[str, float]]] = {r: [] for r in repos}
    for n in range(1, args.rounds + 1):
        for repo in in_turn(repos, n):
            runs[repo].append(measure(repo, args.calls))
    base = repos[-1]
    print("| frame | " + " | ".join(r.name or str(r) for r in repos) + " | ratio to the last, per round |")
    print("| --- |" + " ---: |" * (len(repos) + 1))
    for name in FRAMES:
        cells = [f"{statistics.median(r[name] for r in runs[repo]):,.1f} µs" for repo in repos]
        ratios = [f"{statistics.median(a[name] / b[name] for a, b in zip(runs[repo], runs[base])):.2f}x" for repo in repos[:-1]]
        print(f"| {name} | " + " | ".join(cells) + " | " + (", ".join(ratios) or "–") + " |")


if __name__ == "__main__":
    main()
