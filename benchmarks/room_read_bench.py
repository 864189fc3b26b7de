"""CPU and time of reading a room's members from DynamoDB (`DynamoChatStore.room_members_page`).

That Query is the fan-out list of every message to a room, and of every departure's presence in a large
one: a room of 1,000 is one page of 1,000 items, read by `chat_message` at its CPU share. The figure that
the function pays is the CPU its process spends per read (botocore's request, its reading of the answer,
the store's `Member`s); the time includes DynamoDB Local's own work, in a process of its own, as AWS's
DynamoDB is. Each checkout given with `--repo` (its layer, `layers/common/python`) reads the same rooms of
one DynamoDB Local in a process of its own, the checkouts taking rounds in turn; medians of the rounds,
and the median of the per-round ratios to the last checkout.

    .venv/bin/python benchmarks/room_read_bench.py --repo . --repo /tmp/before [--rounds 5] [--members 100 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import timedelta
from pathlib import Path

from checkouts import add_repo_argument, chosen_repos, in_turn, run_in
TABLE = "bench-MembershipsTable"
_TTL = timedelta(seconds=7500)  # a membership's expiry, as join_room sets it (ConnectionTtlSeconds)

# Run in the checkout (its own interpreter, its own layer): one JSON line, per room, of µs per read.
CHILD = """
import json, sys, time
from parley_testing.functions import import_the_layer
import_the_layer()
from parley.aws.dynamodb_store import DynamoChatStore
rooms, reads = json.loads(sys.argv[1]), int(sys.argv[2])
store = DynamoChatStore(7500, 86400)
out = {}
for room, members in rooms.items():
    for _ in range(3):
        assert len(store.room_members_page(room, after=None, limit=None).members) == members
    cpu, wall = [], []
    for _ in range(reads):
        w, c = time.perf_counter(), time.process_time()
        store.room_members_page(room, after=None, limit=None)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    out[room] = {"cpu_us": sorted(cpu)[len(cpu) // 2] * 1e6, "wall_us": sorted(wall)[len(wall) // 2] * 1e6}
print(json.dumps(out))
"""


def seed(endpoint: str, sizes: list[int]) -> dict[str, int]:
    """One room per size, its memberships as join_room writes them (this checkout's models)."""
    from parley_local.local_aws.account import aws_client
    from parley_testing.template import create_tables_from_template, load_template

    create_tables_from_template(aws_client("dynamodb", endpoint), load_template(), {"MembershipsTable": TABLE})
    from parley_testing.functions import import_the_layer

    import_the_layer()
    from parley.aws.dynamodb_store import _membership_row
    from parley.aws.tables import Membership
    from parley.core.model import Member

    rooms = {}
    for size in sizes:
        room = f"room-{size}"
        with Membership.batch_write() as batch:
            for n in range(size):
                member = Member(room, f"Cn{n:010d}AbCdEfGh=", f"user-{n}", f"User number {n}", 1764500000000 + n, "read,write")
                batch.save(_membership_row(member, _TTL))
        rooms[room] = size
    return rooms


def answer_reading_ms(members: int, rounds: int) -> tuple[float, float]:
    """CPU to read one Query answer of `members` items as the room read gets them (five attributes), by
    botocore's own reader and by this checkout's `ItemsJSONParser`, in alternated rounds: medians, ms."""
    import botocore.session
    from botocore.parsers import JSONParser
    from parley.aws.dynamodb_responses import ItemsJSONParser

    shape = botocore.session.get_session().get_service_model("dynamodb").shape_for("QueryOutput")
    items = [{"connectionId": {"S": f"Cn{n:010d}AbCdEfGh="}, "userId": {"S": f"user-{n}"}, "name": {"S": f"User number {n}"},
              "joinedAt": {"N": str(1764500000000 + n)}, "actions": {"S": "read,write"}} for n in range(members)]
    body = json.dumps({"Items": items, "Count": members, "ScannedCount": members,
                       "ConsumedCapacity": {"TableName": TABLE, "CapacityUnits": 2.5}}).encode()
    times: dict[type, list[float]] = {JSONParser: [], ItemsJSONParser: []}
    for _ in range(rounds):
        for reader, spent in times.items():
            parser, start = reader(), time.process_time()
            parser.parse({"status_code": 200, "headers": {}, "body": body}, shape)
            spent.append(time.process_time() - start)
    return statistics.median(times[JSONParser]) * 1000, statistics.median(times[ItemsJSONParser]) * 1000


def measure(repo: Path, env: dict[str, str], rooms: dict[str, int], reads: int) -> dict[str, dict[str, float]]:
    return run_in(repo, CHILD, json.dumps(rooms), str(reads), env=env, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_argument(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reads", type=int, default=15, help="timed reads of each room per round (their median counts)")
    parser.add_argument("--members", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    repos = chosen_repos(args)

    from parley_local.local_aws.dynamodb_local import DynamoDBLocal

    ddb = DynamoDBLocal.start()
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL_DYNAMODB": ddb.endpoint, "MEMBERSHIPS_TABLE": TABLE, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
        os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL_DYNAMODB", "MEMBERSHIPS_TABLE", "AWS_ACCESS_KEY_ID",
                                               "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION")})
        rooms = seed(ddb.endpoint, args.members)
        runs: dict[Path, list[dict[str, dict[str, float]]]] = {r: [] for r in repos}
        for n in range(1, args.rounds + 1):
            for repo in in_turn(repos, n):
                runs[repo].append(measure(repo, env, rooms, args.reads))
    finally:
        ddb.stop()
    base = repos[-1]
    print(f"DynamoDB Local, {args.rounds} rounds of {args.reads} reads per room and checkout (medians)")
    print("| room | figure | " + " | ".join(str(r) for r in repos) + " | ratio to the last, per round |")
    print("| --- | --- |" + " ---: |" * (len(repos) + 1))
    for room in rooms:
        for key, label in (("cpu_us", "CPU of the reading process per read"), ("wall_us", "time per read")):
            cells = [f"{statistics.median(r[room][key] for r in runs[repo]) / 1000:,.2f} ms" for repo in repos]
            ratios = [f"{statistics.median(a[room][key] / b[room][key] for a, b in zip(runs[repo], runs[base])):.2f}x"
                      for repo in repos[:-1]]
            print(f"| {rooms[room]:,} members | {label} | " + " | ".join(cells) + " | " + (", ".join(ratios) or "–") + " |")
    walked, direct = answer_reading_ms(max(args.members), args.rounds * args.reads)
    print(f"Reading one answer of {max(args.members):,} members (this checkout, no DynamoDB): botocore's walk {walked:.2f} ms "
          f"of CPU, ItemsJSONParser {direct:.2f} ms ({direct / walked:.2f}x)")


if __name__ == "__main__":
    main()
