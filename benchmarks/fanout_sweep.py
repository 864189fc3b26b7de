"""Fan-out time against room size (10, 100, 1,000, 5,000) with 0 ms and 20 ms added to every
`@connections` call, and sequential posting (one call in flight) measured in the same run.

Each point is a fresh child process measuring what `fanout_bench.run()` measures (the real
handler, its own moto server and `@connections` stand-in, the sender's time timed around
`ManagementApiSender.send`), except that the room is seeded with BatchWriteItem rather than one
PutItem per member, so 5,000 members seed in seconds on a busy machine. Sequential posting
(FANOUT_MAX_IN_FLIGHT=1) is measured on 100 members and scaled linearly.

    .venv/bin/python benchmarks/fanout_sweep.py [--sizes 10 100 1000 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEEDUP_GOAL = 20.0  # at 1,000 members, +20 ms
INTEGRATION_TIMEOUT_S = 29.0


def child(members: int, latency_ms: float, in_flight: int) -> dict:
    import boto3

    from common import ConnectionsStandIn, patient_dynamodb, time_chat_message
    from memory_bench import seed
    from parley_testing.moto_process import MotoServer
    from parley_testing.template import create_tables_from_template, load_template

    api = ConnectionsStandIn(latency_ms)
    moto = MotoServer().start()
    url = moto.endpoint
    os.environ.update(AWS_ENDPOINT_URL_DYNAMODB=url, AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI=api.url,
                      FANOUT_MAX_IN_FLIGHT=str(in_flight))
    try:
        create_tables_from_template(boto3.client("dynamodb"), load_template())
        patient_dynamodb()
        seed("bench", members, 0)
        elapsed, fanout_seconds, reply = time_chat_message("bench")
        observed = api.max_in_flight()
    finally:
        moto.stop()
        api.stop()
    return {"members": members, "latency_ms": latency_ms, "max_in_flight": in_flight, "seconds": elapsed,
            "fanout_seconds": fanout_seconds, "delivered_to": reply["data"].get("deliveredTo"), "observed_in_flight": observed}


def point(members: int, latency_ms: float, in_flight: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(members), str(latency_ms), str(in_flight)],
                         capture_output=True, text=True, timeout=600, cwd=HERE.parent)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(sizes: list[int], latencies: list[float], sequential_sample: int = 100) -> dict:
    points, sequential = [], {}
    for latency in latencies:
        seq = point(sequential_sample, latency, 1)
        sequential[str(latency)] = {**seq, "per_call_s": seq["fanout_seconds"] / sequential_sample}
        for members in sizes:
            p = point(members, latency, 64)
            p["sequential_estimate_s"] = sequential[str(latency)]["per_call_s"] * members
            p["speedup"] = p["sequential_estimate_s"] / p["fanout_seconds"]
            points.append(p)
            print(f"  {members:>5} members +{latency:g} ms: fan-out {p['fanout_seconds']:.3f} s, handler {p['seconds']:.2f} s, "
                  f"{p['speedup']:.1f}x vs sequential, in flight <= {p['observed_in_flight']}, deliveredTo {p['delivered_to']}",
                  flush=True)
    data = {"sizes": sizes, "latencies": latencies, "points": points, "sequential": sequential,
            "sequential_sample": sequential_sample}
    key = next((p for p in points if p["members"] == 1000 and p["latency_ms"] == 20), None)
    if key:
        data["goal_speedup"] = {"value": key["speedup"], "goal": SPEEDUP_GOAL, "met": key["speedup"] >= SPEEDUP_GOAL}
    big = [p for p in points if p["members"] == max(sizes)]
    if big:
        worst = max(big, key=lambda p: p["seconds"])
        data["goal_timeout"] = {"members": worst["members"], "fanout_s": max(p["fanout_seconds"] for p in big),
                                "handler_s": worst["seconds"], "limit_s": INTEGRATION_TIMEOUT_S,
                                "met": max(p["fanout_seconds"] for p in big) < INTEGRATION_TIMEOUT_S / 3}
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 5000])
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), float(args.child[1]), int(args.child[2]))))
        return
    data = run(args.sizes, args.latencies)
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
