"""Cost of each request: DynamoDB read/write units and API Gateway messages, turned into
dollars per million chat messages, against a Scan-per-message design measured in the same run.

The real handlers (`$connect`, `join_room`, `chat_message`, `$disconnect`) run in this process
against AWS's DynamoDB Local (`--dynamodb moto`: moto's server); `@connections` is the local
stand-in, which counts the PostToConnection calls it serves. DynamoDB units are computed from
the sizes of the items each call read or wrote (see `common.CapacityRecorder`) and printed next
to the ConsumedCapacity the database reported (DynamoDB Local's comes from item sizes; moto's
is a constant). Rooms of 10 and 100 are measured with no other connections, then again with
10,000 other connections in 100 other rooms.

The Lambda price uses `chat_message`'s duration at the CPU share of its MemorySize in
template.yaml (or `--memory-mb`) (`common.CpuQuota`: this process in a cgroup CPU quota of
MemorySize/1769 of a CPU per CFS period, 20 ms unless PARLEY_CFS_PERIOD_MS says otherwise; the
database and the `@connections` stand-in uncapped, +20 ms per post), timed with the capacity
recorder switched off. Where no cgroup can be made it says so and uses the uncapped time. The floor
is what API Gateway alone bills for the messages PROTOCOL.md requires.

Two senders are priced. The typical one sends fewer than ChatRateBatch messages per rate window
(most chat users): its frames never write the rate counter (core.rate_limits.AllowanceLedger). The
worst case sends at the allowance (ChatRateLimit per window): a share of its frames write it, the
share the ledger gives for the template's ChatRateLimit and ChatRateBatch. A counter-writing frame
is measured as such (units and duration), and the worst case is the mix. The room-of-10 goal is
judged on the typical sender; the worst case is shown next to it.

    [PARLEY_CFS_PERIOD_MS=100] .venv/bin/python benchmarks/cost_bench.py [--others 10000] [--dynamodb local|moto]
        [--memory-mb 512] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from common import (  # noqa: E402  (sets the environment before parley is imported)
    PRICE_APIGW_MESSAGE, PRICE_RRU, PRICE_WRU,
    CFS_PERIOD_US, CapacityRecorder, ConnectionsStandIn, Context, CpuQuota, ServicesGroup, TableInfo, cgroup_unavailable, lambda_usd, median,
    memory_size, publish,
)

import os  # noqa: E402

# The timed messages come from one user, many more than the chat allowance per window allows, so
# the limit is lifted. Whether a frame writes the rate counter does not depend on the limit here:
# the bench sets it per frame (`typical`, `counter_write`), and the worst case's share of writing
# frames comes from the template's ChatRateLimit and ChatRateBatch (`writes_at_the_allowance`).
os.environ["CHAT_RATE_LIMIT"] = "1000000"

DATABASE_NAMES = {"local": "DynamoDB Local", "moto": "moto"}
TEXT = "The quick brown fox jumps over the lazy dog, then checks the chat for new messages from the team."  # 100 chars
HISTORY = 50  # messages already in the room when join_room runs (join_room returns the newest 50)
CHATS = 5  # chat_messages measured per variant
TIMED_CHATS = 7  # chat_messages timed at the Lambda CPU share per room
# The compared design's own table: one item per open connection, as the best-known AWS sample's
# `$connect` writes it, and Scanned per message. Parley keeps no such table (nothing would read it).
SCAN_DESIGN_TABLE = "scan-design-connections"


def create_scan_design_table(recorder: CapacityRecorder) -> None:
    """The table, and its key to the recorder (which knows the template's tables only)."""
    import boto3

    boto3.client("dynamodb").create_table(
        TableName=SCAN_DESIGN_TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
    )
    recorder.tables[SCAN_DESIGN_TABLE] = TableInfo(("connectionId",), {})


def record_for_scan_design(connection_ids: list[str]) -> None:
    """What the compared design's `$connect` writes for each of these connections (not measured)."""
    import boto3

    client = boto3.client("dynamodb")
    for i in range(0, len(connection_ids), 25):
        puts = [{"PutRequest": {"Item": {"connectionId": {"S": cid}}}} for cid in connection_ids[i:i + 25]]
        while puts:  # what the database leaves unprocessed, again
            puts = client.batch_write_item(RequestItems={SCAN_DESIGN_TABLE: puts}).get("UnprocessedItems", {}).get(SCAN_DESIGN_TABLE, [])
POST_LATENCY_MS = 20.0  # what each PostToConnection waits (the Lambda time includes the fan-out)
TYPICAL = "Parley (Query the room), typical sender"
AT_THE_ALLOWANCE = "Parley (Query the room), sender at the allowance"
GOAL_RATIO = 1.15  # issue 12: $ per million messages in a room of 10 within this of the API Gateway floor


def seed_others(count: int, per_room: int, first_id: int) -> float:
    """`count` connections, each in one of count/per_room other rooms, written as the store writes them."""
    from parley.aws.keys import MEMBER_PREFIX
    from parley.aws.tables import Membership
    from parley_testing.lambda_events import connection_id

    started = time.perf_counter()
    now = int(time.time() * 1000)
    from datetime import timedelta

    ttl = timedelta(seconds=7500)
    with Membership.batch_write() as memberships:
        for n in range(count):
            cid = connection_id(first_id + n)
            user = f"other{n}"
            memberships.save(Membership(f"other-{n // per_room}", MEMBER_PREFIX + cid, connection_id=cid, user_id=user,
                                        name=f"Other {n}", joined_at=now, expires_at=ttl))
    record_for_scan_design([connection_id(first_id + n) for n in range(count)])
    return time.perf_counter() - started


@contextlib.contextmanager
def typical() -> object:
    """The next frames as a sender below the batch size sends them: the environment's ledger holds
    none of this user's frames, so the frame is accepted without a counter write."""
    import parley.aws.lambda_routes as adapter

    adapter._ledger.clear()
    yield


@contextlib.contextmanager
def counter_write() -> object:
    """The next frames as the k-th frame of a batch (or any frame near the limit): it writes the
    rate counter, sent with the membership GetItem. Batches of 1 make every frame do so."""
    import parley.aws.lambda_routes as adapter

    adapter._ledger.clear()
    saved = adapter.settings
    adapter.settings = dataclasses.replace(saved, chat_rate_batch=1)
    try:
        yield
    finally:
        adapter.settings = saved
        adapter._ledger.clear()


def writes_at_the_allowance() -> dict:
    """Counter writes per accepted message for a sender at the allowance: one window of ChatRateLimit
    frames through the ledger, with the template's defaults."""
    from parley.core.rate_limits import AllowanceLedger
    from parley_testing.template import load_template

    parameters = load_template()["Parameters"]
    limit, batch = int(parameters["ChatRateLimit"]["Default"]), int(parameters["ChatRateBatch"]["Default"])
    ledger, total, writes = AllowanceLedger(), 0, 0
    for _ in range(limit):
        hits = ledger.take("chat", "sender", 0, limit, batch)
        if hits:
            writes += 1
            total += hits
            ledger.counted("chat", "sender", 0, total)
    return {"chat_rate_limit": limit, "chat_rate_batch": batch, "writes": writes, "writes_per_message": writes / limit,
            "typical_below": batch}


def scenario(recorder: CapacityRecorder, api: ConnectionsStandIn, room_size: int, label: str, first_id: int) -> dict:
    import parley.aws.lambda_routes as adapter
    from parley.core.ids import iso_now, new_ulid
    from parley.core.model import ChatMessage, Member
    from parley_testing.lambda_events import connect_event, connection_id, disconnect_event, message_event
    from parley_testing.functions import load_function

    store = adapter._store
    room = f"cost-{room_size}-{label}"
    now = int(time.time() * 1000)
    for i in range(room_size - 1):
        cid = connection_id(first_id + i)
        store.join_room(Member(room, cid, f"user{first_id + i}", f"User {i}", now))
    record_for_scan_design([connection_id(first_id + i) for i in range(room_size - 1)])
    for i in range(HISTORY):
        store.put_message(ChatMessage(room, new_ulid(now - 1000 + i), "user0", "User 0", TEXT, iso_now()))
    me, user = connection_id(first_id + room_size - 1), "bench-user"
    handlers = {name: load_function(name) for name in ("connect", "join_room", "chat_message", "disconnect")}
    results: dict[str, dict] = {}
    posts_seen = api.calls()

    def measured(name: str, events: list[dict], sender: object = contextlib.nullcontext, key: str | None = None) -> None:
        nonlocal posts_seen
        tallies, seconds, replies = [], [], 0
        for event in events:
            with sender():  # type: ignore[operator]
                recorder.measure()
                started = time.perf_counter()
                response = handlers[name].lambda_handler(event, Context())
                seconds.append(time.perf_counter() - started)
                tallies.append(recorder.stop())
            replies += 1 if response.get("body") else 0
            if name == "chat_message":
                body = json.loads(response["body"])
                assert body["type"] == "chat_update", body
        calls = api.calls()
        posts, posts_seen = calls - posts_seen, calls
        k = len(events)
        ops: dict[str, float] = {}
        for t in tallies:
            for op, c in t.calls.items():
                ops[op] = ops.get(op, 0) + c / k
        results[key or name_key(name, events)] = {
            "rru": sum(t.rru for t in tallies) / k, "wru": sum(t.wru for t in tallies) / k,
            "reported_units": sum(t.reported_units for t in tallies) / k, "ops": ops,
            "posts": posts / k, "replies": replies / k, "inbound": 0 if name in ("connect", "disconnect") else 1,
            "seconds_median": median(seconds),
        }

    def name_key(name: str, events: list[dict]) -> str:
        if name == "chat_message":
            return "chat_message+clientMessageId" if "clientMessageId" in events[0]["body"] else "chat_message"
        return {"connect": "$connect", "disconnect": "$disconnect"}.get(name, name)

    measured("connect", [connect_event(me, user, "Bench")])
    measured("join_room", [message_event(me, user, {"type": "join_room", "data": {"roomId": room}}, name="Bench")])
    chats = [message_event(me, user, {"type": "chat_message", "data": {"roomId": room, "message": TEXT}}, name="Bench")
             for _ in range(CHATS)]
    measured("chat_message", chats, typical)
    measured("chat_message", chats, counter_write, key="chat_message (counter write)")
    measured("chat_message", [message_event(me, user, {"type": "chat_message", "data": {"roomId": room, "message": TEXT,
                                                                                         "clientMessageId": f"c{label}{i}"}}, name="Bench")
                              for i in range(CHATS)], typical)
    measured("disconnect", [disconnect_event(me, user)])
    return {"room_size": room_size, "ops": results, "room": room, "sender": [me, user]}


def time_at_share(scenarios: dict[str, dict], memory_mb: int) -> dict:
    """The `chat_message` handler's duration in each scenario's room at `memory_mb`'s CPU share
    (median of TIMED_CHATS; the capacity recorder must be off: its bookkeeping is not the handler's)."""
    from parley_testing.functions import load_function
    from parley_testing.lambda_events import message_event

    import parley.aws.lambda_routes as adapter
    from parley.core.model import Member

    chat = load_function("chat_message")
    why_not = cgroup_unavailable()
    seconds: dict[str, float] = {}
    write_seconds: dict[str, float] = {}
    for n, sc in scenarios.items():
        me, user = sc["sender"]
        now = int(time.time() * 1000)
        adapter._store.join_room(Member(sc["room"], me, user, "Bench", now))  # back in the room its scenario ended by leaving
        event = message_event(me, user, {"type": "chat_message", "data": {"roomId": sc["room"], "message": TEXT}}, name="Bench")
        times: dict[str, list[float]] = {"typical": [], "counter_write": []}
        for attempt in range(TIMED_CHATS + 1):  # the first pair warms; the two kinds alternate, so they share the noise
            for kind, sender in (("typical", typical), ("counter_write", counter_write)):
                with sender(), CpuQuota(memory_mb) if why_not is None and attempt else contextlib.nullcontext():
                    started = time.perf_counter()
                    response = chat.lambda_handler(event, Context())
                    elapsed = time.perf_counter() - started
                reply = json.loads(response["body"])
                assert reply["type"] == "chat_update" and reply["data"]["deliveredTo"] == int(n) - 1, reply
                times[kind].append(elapsed)
        seconds[n] = median(times["typical"][1:])
        write_seconds[n] = median(times["counter_write"][1:])
    return {"memory_mb": memory_mb, "at_share": why_not is None, "why_not": why_not, "seconds": seconds,
            "counter_write_seconds": write_seconds, "post_latency_ms": POST_LATENCY_MS, "cfs_period_ms": CFS_PERIOD_US / 1000,
            "together_vs_sequential": together_vs_sequential(chat, scenarios["10"], memory_mb, why_not is None)}


def together_vs_sequential(chat: Any, sc: dict, memory_mb: int, at_share: bool) -> dict:
    """What sending the membership GetItem and the rate counter's UpdateItem together saves on a
    chat frame that writes the counter: the handler timed in the room of 10 with the store's
    `membership_and_count` as it is and with the two calls made one after the other, interleaved,
    TIMED_CHATS rounds of each at the same share."""
    from parley_testing.lambda_events import message_event

    import parley.aws.lambda_routes as adapter

    store = adapter._store
    together = store.membership_and_count

    def sequential(room_id: str, connection_id: str, charge: Any) -> Any:
        hits = store.count_request(charge.kind, charge.user_id, charge.window, charge.keep_seconds, hits=charge.hits)
        return store.is_member(room_id, connection_id), hits

    me, user = sc["sender"]
    event = message_event(me, user, {"type": "chat_message", "data": {"roomId": sc["room"], "message": TEXT}}, name="Bench")
    times: dict[str, list[float]] = {"together": [], "sequential": []}
    try:
        for _ in range(TIMED_CHATS):
            for name, variant in (("sequential", sequential), ("together", together)):
                store.membership_and_count = variant
                with counter_write():
                    chat.lambda_handler(event, Context())  # uncapped, after the switch
                with counter_write(), CpuQuota(memory_mb) if at_share else contextlib.nullcontext():
                    started = time.perf_counter()
                    chat.lambda_handler(event, Context())
                    times[name].append(time.perf_counter() - started)
    finally:
        store.membership_and_count = together
    return {name: median(t) for name, t in times.items()} | {"rounds": TIMED_CHATS}


def scan_design(recorder: CapacityRecorder) -> dict:
    """What a Scan of the whole connections table per message reads, measured on the compared design's table."""
    import boto3

    client = boto3.client("dynamodb")
    recorder.measure()
    started = time.perf_counter()
    items, pages, kwargs = 0, 0, {"TableName": SCAN_DESIGN_TABLE, "ReturnConsumedCapacity": "TOTAL"}
    while True:
        page = client.scan(**kwargs)
        items += page["Count"]
        pages += 1
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    seconds = time.perf_counter() - started
    tally = recorder.stop()
    return {"items": items, "pages": pages, "rru": tally.rru, "reported_units": tally.reported_units, "seconds": seconds}


def price_rows(data: dict) -> list[dict]:
    rows = []
    memory = data["lambda"]["memory_mb"]
    w = data["worst_case"]["writes_per_message"]
    for n in data["room_sizes"]:
        ours = data["with_others"][str(n)]["ops"]["chat_message"]
        writing = data["with_others"][str(n)]["ops"]["chat_message (counter write)"]
        seconds = data["lambda"]["seconds"][str(n)]
        write_seconds = data["lambda"]["counter_write_seconds"][str(n)]
        messages = ours["inbound"] + ours["replies"] + ours["posts"]
        base = {"room_size": n, "apigw_messages": messages, "memory_mb": memory, "floor_usd": floor_messages(n) * PRICE_APIGW_MESSAGE * 1e6}
        below_batch = {"lambda_usd": lambda_usd(memory, seconds) * 1e6, "lambda_seconds": seconds, "counter_writes": 0.0}
        rows.append({**base, **below_batch, "design": TYPICAL, "rru": ours["rru"], "wru": ours["wru"]})
        rows.append({
            **base, "design": AT_THE_ALLOWANCE, "rru": (1 - w) * ours["rru"] + w * writing["rru"],
            "wru": (1 - w) * ours["wru"] + w * writing["wru"], "counter_writes": w,
            "lambda_seconds": (1 - w) * seconds + w * write_seconds,
            "lambda_usd": ((1 - w) * lambda_usd(memory, seconds) + w * lambda_usd(memory, write_seconds)) * 1e6,
        })
        rows.append({**base, **below_batch, "design": "Scan all connections per message", "rru": data["scan"]["rru"], "wru": ours["wru"]})
    for row in rows:
        row["usd_apigw"] = row["apigw_messages"] * PRICE_APIGW_MESSAGE * 1e6
        row["usd_lambda"] = row.pop("lambda_usd")
        row["usd_dynamodb"] = (row["rru"] * PRICE_RRU + row["wru"] * PRICE_WRU) * 1e6
        row["usd_total"] = row["usd_apigw"] + row["usd_lambda"] + row["usd_dynamodb"]
        row["floor_ratio"] = row["usd_total"] / row["floor_usd"]
    return rows


def floor_messages(room_size: int) -> int:
    """The API Gateway messages PROTOCOL.md requires for one chat_message in a room of N: the inbound
    frame, `message_received` to each of the N connections (the sender's own included) and the
    `chat_update` reply to the sender."""
    return 1 + room_size + 1


def goal(data: dict) -> dict:
    """Judged on the typical sender (below ChatRateBatch messages per window); the sender at the
    allowance is reported next to it."""
    row = next(r for r in data["prices"] if r["room_size"] == 10 and r["design"] == TYPICAL)
    worst = next(r for r in data["worst_case"]["prices"] if r["room_size"] == 10)
    return {"room_size": 10, "floor_messages": floor_messages(10), "floor_usd": row["floor_usd"], "total_usd": row["usd_total"],
            "ratio": row["floor_ratio"], "goal": GOAL_RATIO, "met": row["floor_ratio"] <= GOAL_RATIO,
            "worst_case_total_usd": worst["usd_total"], "worst_case_ratio": worst["floor_ratio"]}


def run(others: int, dynamodb: str, memory_mb: int | None = None) -> dict:
    import boto3

    from parley_local.local_aws.dynamodb_local import DynamoDBLocal
    from parley_testing.moto_process import MotoServer
    from parley_testing.template import create_tables_from_template, load_template

    api = ConnectionsStandIn(POST_LATENCY_MS)
    database = DynamoDBLocal.start() if dynamodb == "local" else MotoServer().start()
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = database.endpoint
    os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"] = api.url
    try:
        create_tables_from_template(boto3.client("dynamodb"), load_template())
        recorder = CapacityRecorder().install()
        create_scan_design_table(recorder)
        data: dict = {"others": others, "room_sizes": [10, 100], "without_others": {}, "with_others": {},
                      "dynamodb": DATABASE_NAMES[dynamodb]}
        first = 1000
        for n in data["room_sizes"]:
            data["without_others"][str(n)] = scenario(recorder, api, n, "alone", first)
            first += 1000
        data["scan_without_others"] = scan_design(recorder)
        data["seed_seconds"] = seed_others(others, 100, 50_000)
        for n in data["room_sizes"]:
            data["with_others"][str(n)] = scenario(recorder, api, n, "crowd", first)
            first += 1000
        data["scan"] = scan_design(recorder)
        recorder.uninstall()
        data["lambda"] = time_at_share(data["with_others"], memory_mb or memory_size("ChatMessageFunction"))
        data["worst_case"] = writes_at_the_allowance()
        rows = price_rows(data)  # the worst case apart: "prices" keeps one Parley row per room
        data["prices"] = [r for r in rows if r["design"] != AT_THE_ALLOWANCE]
        data["worst_case"]["prices"] = [r for r in rows if r["design"] == AT_THE_ALLOWANCE]
        data["goal"] = goal(data)
        return data
    finally:
        database.stop()
        api.stop()


def report(data: dict) -> str:
    lines = [f"DynamoDB units (computed from item sizes; {data['dynamodb']}'s ConsumedCapacity in brackets) and API Gateway messages per request",
             f"{'request':32} {'room':>5} {'others':>7} {'RRU':>6} {'WRU':>6} {'(DB)':>7} {'posts':>6} {'frames in+reply':>16} {'calls':40}"]
    for label, others in (("without_others", 0), ("with_others", data["others"])):
        for n, sc in data[label].items():
            for op, r in sc["ops"].items():
                calls = ", ".join(f"{k} {v:g}" for k, v in sorted(r["ops"].items()))
                lines.append(f"{op:32} {n:>5} {others:>7} {r['rru']:6.2f} {r['wru']:6.2f} {r['reported_units']:7.2f} {r['posts']:6.1f} "
                             f"{r['inbound'] + r['replies']:16g} {calls}")
    for key, others in (("scan_without_others", 0), ("scan", data["others"])):
        s = data[key]
        lines.append(f"Scan of the connections table with {others} others: {s['items']} items, {s['pages']} page(s), "
                     f"{s['rru']:.1f} RRU eventually consistent ({data['dynamodb']} says {s['reported_units']:g})")
    lam = data["lambda"]
    share = (f"at {lam['memory_mb']} MB's CPU share, CFS period {lam['cfs_period_ms']:g} ms" if lam["at_share"]
             else f"uncapped ({lam['why_not']}: no Lambda CPU share imposed)")
    lines.append(f"$ per million chat messages (with the other connections present; chat_message's Lambda time {share}, "
                 f"+{lam['post_latency_ms']:g} ms per post)")
    for r in data["prices"] + data["worst_case"]["prices"]:
        lines.append(f"  room {r['room_size']:>4} {r['design']:34} API GW {r['usd_apigw']:8.2f}  Lambda {r['usd_lambda']:6.2f} "
                     f"({r['lambda_seconds'] * 1000:.0f} ms)  DynamoDB {r['usd_dynamodb']:6.2f}  total {r['usd_total']:8.2f}  "
                     f"{r['floor_ratio']:.3f}x the API Gateway floor (${r['floor_usd']:.2f})  counter writes/msg {r['counter_writes']:.3f}")
    wc = data["worst_case"]
    lines.append(f"Counter writes: none for a sender below {wc['typical_below']} messages per window; a sender at the allowance "
                 f"({wc['chat_rate_limit']} per window, batches of {wc['chat_rate_batch']}) writes on {wc['writes']} of "
                 f"{wc['chat_rate_limit']} messages ({wc['writes_per_message']:.3f} per message); a writing frame took "
                 + ", ".join(f"{float(s) * 1000:.0f} ms (room {n})" for n, s in lam["counter_write_seconds"].items()))
    g = data["goal"]
    tvs = lam.get("together_vs_sequential")
    if tvs:
        lines.append(f"Room of 10, a counter-writing frame, interleaved: the membership GetItem and the counter's UpdateItem together {tvs['together'] * 1000:.0f} ms, "
                     f"one after the other (as before) {tvs['sequential'] * 1000:.0f} ms (median of {tvs['rounds']} each)")
    lines.append(f"Goal: room of 10 within {g['goal']}x of the floor ({g['floor_messages']} messages, ${g['floor_usd']:.2f}/M), "
                 f"typical sender: {g['ratio']:.3f}x, {'met' if g['met'] else 'NOT met'}; sender at the allowance: "
                 f"{g['worst_case_ratio']:.3f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--others", type=int, default=10_000)
    parser.add_argument("--dynamodb", choices=("local", "moto"), default="local", help="the database: DynamoDB Local (default) or moto")
    parser.add_argument("--memory-mb", type=int, help="price chat_message at this MemorySize (default: the template's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with ServicesGroup():  # DynamoDB Local and the stand-in get their CPU on a busy machine
        data = run(args.others, args.dynamodb, args.memory_mb)
    publish(report(data), data, args.json)


if __name__ == "__main__":
    main()
