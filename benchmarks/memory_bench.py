"""Peak memory (ru_maxrss) of the handlers that fan out, in a fresh child process per run, so the
template's `MemorySize` is chosen from data.

The parent starts moto's DynamoDB server and the `@connections` stand-in and seeds rooms of
1,000 and 5,000 connections. Each child imports one function's `app` (peak RSS noted: the
import floor), invokes its handler once on the seeded room, and reports its peak RSS.

    .venv/bin/python benchmarks/memory_bench.py [--sizes 1000 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ConnectionsStandIn, patient_dynamodb, publish  # sets the benchmark environment before parley is imported

MEMORY_SIZE_MB = 256  # template.yaml Globals


def child(function: str, room: str, members: int, base: int) -> None:
    import resource

    from common import Context
    from parley_testing.functions import load_function
    from parley_testing.lambda_events import connection_id, disconnect_event, message_event

    patient_dynamodb()
    app = load_function(function)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    me = connection_id(base + members - 1 if function != "join_room" else 99_999)
    if function == "chat_message":
        event = message_event(me, "user0", {"type": "chat_message", "data": {"roomId": room, "message": "x" * 100}})
    elif function == "join_room":
        event = message_event(me, "newcomer", {"type": "join_room", "data": {"roomId": room}})
    else:
        event = disconnect_event(me, f"user{base + members - 1}")
    started = time.perf_counter()
    response = app.lambda_handler(event, Context())
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"function": function, "members": members, "import_peak_mb": before / 1024, "peak_mb": after / 1024,
                      "seconds": seconds, "status": response.get("statusCode")}))


def seed(room: str, members: int, base: int) -> None:
    from datetime import timedelta

    from parley.aws.keys import MEMBER_PREFIX
    from parley.aws.tables import Membership
    from parley_testing.lambda_events import connection_id

    now, ttl = int(time.time() * 1000), timedelta(seconds=7500)
    with Membership.batch_write() as memberships:
        for n in range(base, base + members):
            cid = connection_id(n)
            memberships.save(Membership(room, MEMBER_PREFIX + cid, connection_id=cid, user_id=f"user{n}", name=f"User {n}",
                                        joined_at=now, expires_at=ttl))


def run(sizes: list[int]) -> dict:
    import boto3

    from parley_testing.moto_process import MotoServer
    from parley_testing.template import create_tables_from_template, load_template

    api = ConnectionsStandIn(0)
    moto = MotoServer().start()
    url = moto.endpoint
    env = {**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": url, "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": api.url}
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = url
    runs = []
    try:
        plan = [("chat_message", n) for n in sizes] + [("join_room", max(sizes)), ("disconnect", max(sizes))]
        create_tables_from_template(boto3.client("dynamodb"), load_template())
        patient_dynamodb()
        for index, (function, members) in enumerate(plan):
            # each run has its own room (partition) and its own connection ids
            room, base = f"mem-{function}-{members}", index * 10_000
            seed(room, members, base)
            out = subprocess.run([sys.executable, __file__, "--child", function, room, str(members), str(base)], env=env,
                                 capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-3000:])
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        moto.stop()
        api.stop()
    peak = max(r["peak_mb"] for r in runs)
    return {"memory_size_mb": MEMORY_SIZE_MB, "runs": runs, "peak_mb": peak, "headroom": MEMORY_SIZE_MB / peak}


def report(data: dict) -> str:
    lines = [f"peak RSS per handler process (MemorySize {data['memory_size_mb']} MB)"]
    for r in data["runs"]:
        lines.append(f"  {r['function']:13} {r['members']:>5} connections: after import {r['import_peak_mb']:6.1f} MB, "
                     f"peak {r['peak_mb']:6.1f} MB, handler {r['seconds']:.2f} s")
    lines.append(f"  highest peak {data['peak_mb']:.1f} MB: {data['headroom']:.1f}x headroom under {data['memory_size_mb']} MB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=4, metavar=("FUNCTION", "ROOM", "MEMBERS", "BASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))
        return
    data = run(args.sizes)
    publish(report(data), data, args.json)


if __name__ == "__main__":
    main()
