"""Fan-out of one `chat_message` through the real handler, with latency added to every
`@connections` call, against sequential posting measured in the same run.

The handler runs in this process against moto's DynamoDB server (a separate process); `@connections` is a local stand-in
in a separate process that sleeps `--latency-ms` per call and reports the most calls it saw
in flight. Prints one line per configuration and the ratio to sequential.

    .venv/bin/python benchmarks/fanout_bench.py --members 1000 --latency-ms 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import ConnectionsStandIn, time_chat_message  # sets the benchmark environment before parley is imported


def run(members: int, latency_ms: float, max_in_flight: int) -> dict:
    import boto3

    from parley_testing.lambda_events import connection_id
    from parley_testing.moto_process import MotoServer
    from parley_testing.template import create_tables_from_template, load_template

    api = ConnectionsStandIn(latency_ms)
    moto = MotoServer().start()
    dynamodb_url = moto.endpoint
    os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"] = api.url
    os.environ["FANOUT_MAX_IN_FLIGHT"] = str(max_in_flight)
    try:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb_url
        create_tables_from_template(boto3.client("dynamodb"), load_template())
        import parley.aws.lambda_routes as adapter
        from parley.core.model import Member

        for n in range(members):
            adapter._store.join_room(Member("bench", connection_id(n), f"user{n}", f"User {n}", n))
        elapsed, fanout_seconds, reply = time_chat_message("bench")
        observed = api.max_in_flight()
    finally:
        moto.stop()
        api.stop()
    return {"members": members, "latency_ms": latency_ms, "max_in_flight": max_in_flight, "seconds": elapsed, "fanout_seconds": fanout_seconds,
            "delivered_to": reply["data"].get("deliveredTo"), "observed_in_flight": observed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--sequential-sample", type=int, default=100,
                        help="members for the sequential baseline (scaled linearly to --members)")
    args = parser.parse_args()
    # Each run is a fresh process so moto state and sender pools never leak between them.
    if os.environ.get("PARLEY_BENCH_CHILD"):
        print(json.dumps(run(args.members, args.latency_ms, args.max_in_flight)))
        return
    def child(members: int, in_flight: int) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--members", str(members), "--latency-ms", str(args.latency_ms), "--max-in-flight", str(in_flight)],
            env={**os.environ, "PARLEY_BENCH_CHILD": "1"}, capture_output=True, text=True, timeout=600, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    concurrent = child(args.members, args.max_in_flight)
    sequential = child(args.sequential_sample, 1)
    sequential_scaled = sequential["fanout_seconds"] * args.members / args.sequential_sample
    print(f"fan-out to {args.members} connections, +{args.latency_ms:g} ms per @connections call")
    print(f"  concurrent (max {args.max_in_flight} in flight): fan-out {concurrent['fanout_seconds']:.3f} s "
          f"(whole handler {concurrent['seconds']:.3f} s, moto's Query of {args.members} members included), "
          f"deliveredTo={concurrent['delivered_to']}, most in flight seen by the server={concurrent['observed_in_flight']}")
    print(f"  sequential fan-out: {sequential['fanout_seconds']:.3f} s for {args.sequential_sample} -> {sequential_scaled:.2f} s for {args.members}")
    print(f"  speed-up vs sequential: {sequential_scaled / concurrent['fanout_seconds']:.1f}x")


if __name__ == "__main__":
    main()
