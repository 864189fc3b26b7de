"""Benchmark of the local gateway (`parley dev`) running the real template.yaml and handlers, over real sockets.

Measures, for issue 6 section 4 and the gateway half of section 1:
1. `ping` round-trip time through the gateway (the `ping` Lambda, route response) against a bare
   `websockets` echo server measured in the same run: p50/p99 and their ratio;
2. N concurrent connections (default 1,000) opened through the authorizer and `$connect`: per second;
   then one `ping` on each at once;
3. `join_room` latency into a room growing to `--joins` connections;
4. messages delivered per second with the N connections open: `--rooms` rooms share the N
   connections, one sender per room sends `--messages` chat messages back to back (each after the
   previous one's `chat_update`), all senders at once; every `message_received` at a listener counts;
5. fan-out of one `chat_message` to a room of N connections, `--fanout-repeat` times, for each
   `--latencies` value of `--post-latency-ms` (one gateway each): first / median / last arrival;
6. a join storm (issues 11 and 12), on the gateway with `--storm-latency` (default +20 ms): the N
   connections, each its own user, send `join_room` into one new room all at once; error frames
   (by code), time until every client has its `participants_list` and `chat_history` (target 60 s),
   and the worker environments each function ended with; then the fan-out of measurement 5 runs in
   that room, joined for real, instead of a seeded one (target: every member within 1 s);
7. Ctrl-C (SIGINT to the process group) with the N sockets still open (their memberships
   deleted first): time until `parley dev` has closed them all, run their `$disconnect` and exited.

Rooms are seeded straight into the embedded DynamoDB with the membership items the handlers write
(N joins through moto would take O(N^2) time); senders join for real.

Usage: .venv/bin/python benchmarks/gateway_bench.py [--connections 1000] [--latencies 0 20] [--json FILE]
Every wait is bounded; each gateway runs as a subprocess on a free 127.0.0.1 port.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.server import serve

from parley_local.tokens import make_token
from parley_testing.dev_process import DevProcess, group_pids
from parley_testing.ports import free_port
from parley_testing.template import ROOT as REPO

PING = json.dumps({"type": "ping"})


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def stats_ms(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "mean_ms": statistics.mean(values), "p50_ms": pct(values, 50),
            "p95_ms": pct(values, 95), "p99_ms": pct(values, 99)}


class Gateway:
    """`parley dev` (a `DevProcess`: its own process group, its output kept in memory)."""

    def __init__(self, args: argparse.Namespace, latency_ms: float, dynamodb: str):
        self.args = args
        self.latency_ms = latency_ms
        self.dynamodb = dynamodb
        self.stack = f"bench{os.getpid()}{dynamodb}l{int(latency_ms)}"
        self.dev: DevProcess | None = None

    def start(self) -> None:
        self.dev = DevProcess(["--template", str(REPO / "template.yaml"), "--port", str(free_port()),
                               "--post-latency-ms", f"{self.latency_ms:g}", "--stack-name", self.stack, "--quiet",
                               "--dynamodb", self.dynamodb],
                              cwd=Path(self.args.repo))
        try:
            self.dev.wait_ready(120)
        except AssertionError as exc:
            self.dev.kill()
            raise SystemExit(f"parley dev did not become ready: {exc}") from None

    def ws(self, token: str) -> str:
        assert self.dev is not None
        return f"{self.dev.ws_url}?token={token}"

    async def interrupt(self, timeout: float = 90.0) -> dict[str, Any]:
        """Ctrl-C as a terminal sends it (the whole process group); time until the process has exited."""
        assert self.dev is not None
        t = time.perf_counter()
        self.dev.interrupt()
        try:
            code = await asyncio.to_thread(self.dev.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return {"seconds": None, "exit_code": None}
        seconds = time.perf_counter() - t
        await asyncio.to_thread(self.dev.reader.join, 10)
        return {"seconds": seconds, "exit_code": code}

    def kill(self) -> None:
        if self.dev is not None:
            self.dev.kill()


class Listener:
    """One client connection whose frames a background task records as they arrive."""

    def __init__(self, ws: Any, hub: "Hub"):
        self.ws = ws
        self.hub = hub
        self.seen: dict[str, float] = {}  # frame type -> when it first arrived
        self.errors: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.hub.record(self, json.loads(raw), time.perf_counter())
        except websockets.ConnectionClosed:
            pass


class Hub:
    """Arrival times of `message_received` frames by message id, and other frames by type."""

    def __init__(self) -> None:
        self.messages: dict[str, list[float]] = collections.defaultdict(list)
        self.counts: collections.Counter[str] = collections.Counter()

    def record(self, listener: Listener, frame: dict[str, Any], t: float) -> None:
        kind = str(frame.get("type"))
        if "type" not in frame and "message" in frame:  # API Gateway's own answer: "Endpoint request timed out", ...
            kind = f"gateway: {frame['message']}"
        self.counts[kind] += 1
        listener.seen.setdefault(kind, t)
        if kind == "error" or kind.startswith("gateway: "):
            listener.errors.append(frame.get("data") or {"code": kind})
        if kind == "message_received":
            self.messages[str(frame["data"].get("messageId"))].append(t)

    async def wait(self, pred: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.005)


def _logged_ids(log_lines: list[str], *needles: str) -> set[str]:
    """Connection ids of the Parley handlers' JSON log lines that contain every one of `needles`."""
    out = set()
    for line in log_lines:
        if all(needle in line for needle in needles):
            m = re.search(r'"connection_id":"([^"]+)"', line)
            if m:
                out.add(m.group(1))
    return out


def disconnected_1001(log_lines: list[str]) -> set[str]:
    """Connection ids whose `$disconnect` handler logged `disconnected` with code 1001."""
    return _logged_ids(log_lines, '"message":"disconnected"', '"code":1001')


async def listener_ids(gw: Gateway, expected: int, timeout: float = 30) -> list[str]:
    """The connection ids of the `listener` connections, from the `connected` line their `$connect`
    logged (Parley keeps no table of connections); waits up to `timeout` for `expected` of them,
    as `parley dev` copies the handlers' output a little after each handshake."""
    assert gw.dev is not None
    deadline = time.monotonic() + timeout
    while True:
        ids = sorted(_logged_ids(gw.dev.lines, '"message":"connected"', '"user_id":"listener'))
        if len(ids) >= expected or time.monotonic() > deadline:
            return ids
        await asyncio.sleep(0.05)


async def request(ws: Any, payload: dict[str, Any], kind: str, timeout: float = 120) -> tuple[dict[str, Any], float]:
    """Send a frame on a connection with no Listener and wait for the first frame of `kind` (others skipped)."""
    t = time.perf_counter()
    await ws.send(json.dumps(payload))
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if frame.get("type") == kind:
            return frame, time.perf_counter() - t
        if frame.get("type") == "error" or ("type" not in frame and "message" in frame):
            raise SystemExit(f"error frame for {payload['type']}: {frame}")


async def rtt(url: str, n: int, expect: str | None) -> list[float]:
    async with websockets.connect(url, open_timeout=30, compression=None) as ws:
        out = []
        for i in range(n + 20):
            t = time.perf_counter()
            await ws.send(PING)
            reply = await asyncio.wait_for(ws.recv(), 10)
            if expect and expect not in reply:
                raise SystemExit(f"unexpected reply {reply[:200]}")
            if i >= 20:  # warm-up excluded
                out.append((time.perf_counter() - t) * 1000)
        return out


def _ddb(endpoint: str) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def seed_rooms(endpoint: str, stack: str, ids: list[str], rooms: dict[str, int]) -> dict[str, int]:
    """Put the `listener` connections `ids` into rooms: {room: how many (0 = all of them)}. Returns the sizes."""
    ddb = _ddb(endpoint)
    member_table = next(n for n in ddb.list_tables()["TableNames"] if n.startswith(stack + "-") and n.endswith("MembershipsTable"))
    now = int(time.time())
    items, sizes, start = [], {}, 0
    for room, size in rooms.items():
        chosen = ids if size == 0 else ids[start:start + size]
        start += 0 if size == 0 else size
        sizes[room] = len(chosen)
        items += [{"PutRequest": {"Item": {
            "roomId": {"S": room}, "memberKey": {"S": f"c#{cid}"}, "connectionId": {"S": cid},
            "userId": {"S": "listener"}, "name": {"S": "Listener"},
            "joinedAt": {"N": str(now * 1000)}, "expiresAt": {"N": str(now + 7500)},
        }}} for cid in chosen]
    for i in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={member_table: items[i:i + 25]})
    return sizes


def unseed_rooms(endpoint: str, stack: str, rooms: list[str]) -> int:
    """Delete every membership of these rooms (so that `$disconnect` finds the listeners in no room)."""
    ddb = _ddb(endpoint)
    member_table = next(n for n in ddb.list_tables()["TableNames"] if n.startswith(stack + "-") and n.endswith("MembershipsTable"))
    keys = [
        {"roomId": item["roomId"], "memberKey": item["memberKey"]}
        for room in rooms
        for page in ddb.get_paginator("query").paginate(
            TableName=member_table, KeyConditionExpression="roomId = :r", ExpressionAttributeValues={":r": {"S": room}},
            ProjectionExpression="roomId, memberKey")
        for item in page["Items"]
    ]
    for i in range(0, len(keys), 25):
        ddb.batch_write_item(RequestItems={member_table: [{"DeleteRequest": {"Key": k}} for k in keys[i:i + 25]]})
    return len(keys)


async def open_listeners(gw: Gateway, n: int, concurrency: int, hub: Hub, distinct_users: bool = False) -> tuple[list[Listener], float, list[str]]:
    """`n` connections of the user `listener`, or (`distinct_users`) of `n` users `listener-<i>`."""
    shared = make_token("listener", "Listener", 3600)
    sem = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(i: int) -> Any:
        token = make_token(f"listener-{i}", f"Listener {i}", 3600) if distinct_users else shared
        async with sem:
            try:
                return await websockets.connect(gw.ws(token), open_timeout=60, compression=None, max_queue=None)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(type(exc).__name__)
                return None

    t = time.perf_counter()
    conns = [c for c in await asyncio.gather(*(one(i) for i in range(n))) if c is not None]
    seconds = time.perf_counter() - t
    return [Listener(c, hub) for c in conns], seconds, errors


async def fanout(gw: Gateway, hub: Hub, listeners: list[Listener], room: str, repeat: int) -> dict[str, Any]:
    """One sender joins `room` (seeded with every listener) and sends `repeat` chat messages, one at a time."""
    sender = await websockets.connect(gw.ws(make_token(f"sender{int(gw.latency_ms)}", "Sender")), open_timeout=60, max_queue=None)
    await request(sender, {"type": "join_room", "data": {"roomId": room, "limit": 1}}, "chat_history")
    runs = []
    for i in range(repeat):
        await asyncio.sleep(0.5)  # let the join's announcement (or the previous run) drain
        cpu0 = await asyncio.to_thread(stack_cpu_s, gw.dev.pid)
        t0 = time.perf_counter()
        update, update_s = await request(sender, {"type": "chat_message", "data": {"roomId": room, "message": f"fan-out {i}"}}, "chat_update")
        mid = str(update["data"].get("messageId"))
        arrivals = hub.messages[mid]
        deadline = time.monotonic() + 60  # a listener whose join failed gets nothing: report how many did
        while len(arrivals) < len(listeners) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        ms = sorted((t - t0) * 1000 for t in arrivals) or [float("nan")]
        cpu = await asyncio.to_thread(cpu_since, gw.dev.pid, cpu0)
        runs.append({"first_ms": ms[0], "median_ms": pct(ms, 50), "last_ms": ms[-1], "update_ms": update_s * 1000,
                     "delivered": len(arrivals), "delivered_to": update["data"].get("deliveredTo"), "cpu_s": cpu})
    await sender.close()
    return {"latency_ms": gw.latency_ms, "members": len(listeners), "runs": runs,
            "all_delivered": all(r["delivered"] >= len(listeners) for r in runs),
            "last_ms_median": statistics.median(r["last_ms"] for r in runs),
            "first_ms_median": statistics.median(r["first_ms"] for r in runs)}


def stack_cpu_s(pgid: int) -> dict[str, float]:
    """CPU seconds used so far by `parley dev`'s processes, by role: its process group, plus DynamoDB Local's
    JVM (a child of a process in the group, in a session of its own). Lets a figure measured on a busy
    machine say how much of the 2 cores the stack itself needed."""
    group = set(group_pids(pgid))
    tick = os.sysconf("SC_CLK_TCK")
    out: collections.Counter[str] = collections.Counter()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(entry.name) not in group and int(fields[1]) not in group:
            continue
        if argv[0].endswith(b"java"):
            role = "database"
        elif len(argv) > 3 and argv[2].endswith(b"worker_main.py"):
            role = json.loads(argv[3]).get("function_name", "?").rsplit("-", 1)[-1]
        elif b"parley_local.cli" in argv:
            role = "gateway"
        else:
            role = "database" if any(b"moto" in a for a in argv) else "other"
        out[role] += (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


def cpu_since(pgid: int, before: dict[str, float]) -> dict[str, float]:
    """CPU seconds by role since `before` (environments started meanwhile count from zero)."""
    now = stack_cpu_s(pgid)
    return {role: round(now[role] - before.get(role, 0.0), 2) for role in sorted(now) if now[role] - before.get(role, 0.0) >= 0.01}


def worker_counts(pgid: int) -> dict[str, int]:
    """Live Lambda environments (`worker_main.py` processes) of `parley dev`'s process group, by function."""
    counts: collections.Counter[str] = collections.Counter()
    for pid in group_pids(pgid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 3 and argv[2].endswith(b"worker_main.py"):
            counts[json.loads(argv[3]).get("function_name", "?")] += 1
    return dict(counts)


async def join_storm(gw: Gateway, listeners: list[Listener], room: str, timeout: float) -> dict[str, Any]:
    """Every listener sends `join_room` into `room` at once; until each has `participants_list` and
    `chat_history` (or an error), at most `timeout` s. Errors are counted by code: an `error` frame's,
    or `gateway: <message>` for API Gateway's own answers (the integration timed out or failed)."""
    assert gw.dev is not None
    frame = json.dumps({"type": "join_room", "data": {"roomId": room, "limit": 1}})
    pgid = gw.dev.pid
    peak: dict[str, int] = {}

    def answered(lst: Listener) -> bool:
        return bool(lst.errors) or ("chat_history" in lst.seen and "participants_list" in lst.seen)

    cpu0 = await asyncio.to_thread(stack_cpu_s, pgid)
    t0 = time.perf_counter()
    await asyncio.gather(*(lst.ws.send(frame) for lst in listeners))
    sent_s = time.perf_counter() - t0
    deadline = time.monotonic() + timeout
    while not all(answered(lst) for lst in listeners) and time.monotonic() < deadline:
        for fn, k in (await asyncio.to_thread(worker_counts, pgid)).items():
            peak[fn] = max(peak.get(fn, 0), k)
        await asyncio.sleep(0.25)
    done = [lst for lst in listeners if "chat_history" in lst.seen and "participants_list" in lst.seen]
    ends = sorted(max(lst.seen["chat_history"], lst.seen["participants_list"]) - t0 for lst in done)
    codes = collections.Counter(str(e.get("code")) for lst in listeners for e in lst.errors)
    all_s = ends[-1] if len(done) == len(listeners) and ends else None
    return {"clients": len(listeners), "joined": len(done), "errors": sum(codes.values()), "error_codes": dict(codes),
            "send_s": sent_s, "all_joined_s": all_s, "p50_s": pct(ends, 50) if ends else None,
            "p99_s": pct(ends, 99) if ends else None, "timeout_s": timeout,
            "peak_environments": peak, "environments_after": await asyncio.to_thread(worker_counts, pgid),
            "cpu_s": await asyncio.to_thread(cpu_since, pgid, cpu0),
            "presence_updates": gw_counts(listeners, "presence_update"), "user_joined": gw_counts(listeners, "user_joined")}


async def settle(hub: Hub, quiet_s: float, timeout: float) -> float:
    """Wait until no listener has received a frame for `quiet_s` (at most `timeout`); returns the time waited."""
    t0 = time.monotonic()
    total, quiet_since = -1, t0
    while time.monotonic() - t0 < timeout:
        now_total = sum(hub.counts.values())
        if now_total != total:
            total, quiet_since = now_total, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


def gw_counts(listeners: list[Listener], kind: str) -> int:
    """How many listeners got at least one frame of `kind`."""
    return sum(kind in lst.seen for lst in listeners)


async def throughput(gw: Gateway, hub: Hub, listeners: list[Listener], rooms: list[str], messages: int) -> dict[str, Any]:
    """One sender per room, `messages` chat messages each, back to back, all senders at once."""
    senders = []
    for i, room in enumerate(rooms):
        ws = await websockets.connect(gw.ws(make_token(f"talker{i}", f"Talker {i}")), open_timeout=60, max_queue=None)
        await request(ws, {"type": "join_room", "data": {"roomId": room, "limit": 1}}, "chat_history")
        senders.append(ws)
    await asyncio.sleep(1.0)  # the joins' user_joined frames drain
    sent: list[tuple[str, float]] = []

    async def talk(ws: Any, room: str) -> None:
        for k in range(messages):
            t = time.perf_counter()
            update, _ = await request(ws, {"type": "chat_message", "data": {"roomId": room, "message": f"m{k}"}}, "chat_update")
            sent.append((str(update["data"]["messageId"]), t))

    t0 = time.perf_counter()
    await asyncio.gather(*(talk(ws, room) for ws, room in zip(senders, rooms)))
    per_room = len(listeners) // len(rooms)
    expected = len(sent) * per_room
    await hub.wait(lambda: sum(len(hub.messages[m]) for m, _ in sent) >= expected, 120, f"{expected} deliveries")
    last = max(max(hub.messages[m]) for m, _ in sent)
    seconds = last - t0
    latencies = [(t - ts) * 1000 for m, ts in sent for t in hub.messages[m]]
    for ws in senders:
        await ws.close()
    return {"rooms": len(rooms), "room_size": per_room, "senders": len(rooms), "messages_per_sender": messages,
            "messages": len(sent), "deliveries": expected, "seconds": seconds,
            "deliveries_per_s": expected / seconds, "messages_per_s": len(sent) / seconds,
            "latency_p50_ms": pct(latencies, 50), "latency_p99_ms": pct(latencies, 99)}


async def run_gateway(args: argparse.Namespace, latency_ms: float, dynamodb: str, first: bool) -> dict[str, Any]:
    gw = Gateway(args, latency_ms, dynamodb)
    gw.start()
    out: dict[str, Any] = {"latency_ms": latency_ms, "dynamodb": dynamodb, "startup_s": gw.dev.ready_s}
    print(f"  ready line after {gw.dev.ready_s:.1f} s", flush=True)
    listeners: list[Listener] = []
    seeded: list[str] = []
    try:
        if first:
            async def echo(ws: Any) -> None:
                async for msg in ws:
                    await ws.send(msg)

            async with serve(echo, "127.0.0.1", 0, compression=None) as server:
                echo_url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
                base = await rtt(echo_url, args.pings, None)
                through = await rtt(gw.ws(make_token("pinger")), args.pings, '"pong"')
            out["rtt"] = {"echo": stats_ms(base), "gateway": stats_ms(through),
                          "ratio_p50": pct(through, 50) / pct(base, 50), "ratio_p99": pct(through, 99) / pct(base, 99)}
            print(f"  ping RTT p50 {pct(base, 50):.2f} ms bare, {pct(through, 50):.2f} ms through the gateway", flush=True)

        hub = Hub()
        storm = args.storm and latency_ms == args.storm_latency and not args.fanout_only
        listeners, open_s, errors = await open_listeners(gw, args.connections, args.open_concurrency, hub, distinct_users=storm)
        out["open"] = {"n": args.connections, "opened": len(listeners), "errors": len(errors), "seconds": open_s,
                       "per_s": len(listeners) / open_s, "concurrency": args.open_concurrency}
        print(f"  {len(listeners)} connections opened in {open_s:.2f} s ({len(errors)} errors)", flush=True)

        if first:
            t = time.perf_counter()
            pongs = hub.counts["pong"]
            await asyncio.gather(*(lst.ws.send(PING) for lst in listeners))
            await hub.wait(lambda: hub.counts["pong"] - pongs >= len(listeners), 120, "pongs")
            burst_s = time.perf_counter() - t
            out["ping_burst"] = {"pongs": len(listeners), "seconds": burst_s, "per_s": len(listeners) / burst_s}

            join_ms, joiners = [], []
            join_room = f"joins-{int(time.time())}"
            for i in range(args.joins):
                ws = await websockets.connect(gw.ws(make_token(f"joiner{i}", f"Joiner {i}")), open_timeout=60, max_queue=None)
                _, s = await request(ws, {"type": "join_room", "data": {"roomId": join_room, "limit": 1}}, "chat_history")
                join_ms.append(s * 1000)
                joiners.append(Listener(ws, hub))  # keeps draining the next joiners' user_joined frames
            if join_ms:
                out["joins"] = {"room_growing_to": len(join_ms), **stats_ms(join_ms)}
            await asyncio.gather(*(j.ws.close() for j in joiners))

            rooms = [f"talk-{k}-{int(time.time())}" for k in range(args.rooms)]
            seeded += rooms
            ids = await listener_ids(gw, len(listeners))
            await asyncio.to_thread(seed_rooms, gw.dev.dynamodb_endpoint, gw.stack, ids, {r: len(listeners) // args.rooms for r in rooms})
            out["throughput"] = await throughput(gw, hub, listeners, rooms, args.messages)
            print(f"  {out['throughput']['deliveries']} deliveries in {out['throughput']['seconds']:.2f} s", flush=True)

        room = f"fanout-{int(time.time())}"
        seeded.append(room)
        if storm:
            s = out["storm"] = await join_storm(gw, listeners, room, args.storm_timeout)
            print(f"  join storm of {s['clients']}: {s['joined']} joined, {s['errors']} error frames {s['error_codes']}, "
                  f"all within {s['all_joined_s'] if s['all_joined_s'] is None else round(s['all_joined_s'], 1)} s; "
                  f"environments at peak {s['peak_environments']}", flush=True)
            s["settle_s"] = await settle(hub, quiet_s=2.0, timeout=60)  # the storm's last presence_update frames go out first
        else:
            await asyncio.to_thread(seed_rooms, gw.dev.dynamodb_endpoint, gw.stack, await listener_ids(gw, len(listeners)), {room: 0})
        if storm and s["all_joined_s"] is None:
            out["fanout"] = None  # joins still queued: a sender's join would wait behind them; no room to measure yet
            print("  fan-out skipped: the storm's joins were not all answered", flush=True)
        else:
            out["fanout"] = await fanout(gw, hub, listeners, room, args.fanout_repeat)
            print(f"  fan-out to {len(listeners)}, +{latency_ms:g} ms: last delivery {out['fanout']['last_ms_median']:.0f} ms "
                  f"(median of {args.fanout_repeat})", flush=True)

        if args.fanout_only:
            return out
        # Ctrl-C with the listeners open but in no room: each `$disconnect` of a member queries its
        # rooms in moto (O(room) each, O(N^2) for N members of one room), which is not the gateway's time.
        await asyncio.to_thread(unseed_rooms, gw.dev.dynamodb_endpoint, gw.stack, seeded)
        await asyncio.sleep(0.5)

        ids = set(await listener_ids(gw, len(listeners)))
        closed_before = sum(lst.task.done() for lst in listeners)
        t = time.perf_counter()
        stop = asyncio.create_task(gw.interrupt())
        _, still_open = await asyncio.wait([lst.task for lst in listeners], timeout=90)
        all_closed_s = time.perf_counter() - t if not still_open else None
        codes = collections.Counter(lst.ws.close_code for lst in listeners)
        out["shutdown"] = {**await stop, "open_sockets": len(listeners) - closed_before, "all_closed_s": all_closed_s,
                           "close_codes": {str(k): v for k, v in codes.items()},
                           "disconnects": len(ids & disconnected_1001(gw.dev.lines))}
        sd = out["shutdown"]
        print(f"  Ctrl-C with {sd['open_sockets']} sockets open: " + (f"exited {sd['exit_code']} after {sd['seconds']:.1f} s"
              if sd["seconds"] is not None else "no exit within 90 s (killed)"), flush=True)
    finally:
        gw.kill()
    return out


DATABASE_NAMES = {"local": "DynamoDB Local", "moto": "moto"}
FANOUT_TARGET_MS = 500  # issue 11: last of 1,000 deliveries, no added latency
STORM_JOIN_TARGET_S = 60  # issues 11 and 12: every client of the storm answered, no error frame
STORM_FANOUT_TARGET_MS = 1000  # issue 12: then one chat_message to all of them, +20 ms per post


def cpu_text(cpu: dict[str, float]) -> str:
    """`12.3 s (gateway 1.0, functions 8.1, database 3.2)`: CPU seconds the stack used, by role."""
    gateway, database = cpu.get("gateway", 0.0), cpu.get("database", 0.0)
    functions = sum(v for k, v in cpu.items() if k not in ("gateway", "database", "other"))
    return f"{sum(cpu.values()):.1f} s (gateway {gateway:.1f}, functions {functions:.1f}, database {database:.1f})"


def storm_environments(storm: dict[str, Any]) -> int:
    return sum(k for fn, k in storm["peak_environments"].items() if fn.endswith("-JoinRoomFunction"))


def targets(result: dict[str, Any]) -> list[str]:
    """Each target of issues 11 and 12 measured here, per database: figure and met / not met."""
    out = []
    for g in result["gateways"]:
        db, f = DATABASE_NAMES[g["dynamodb"]], g["fanout"]
        if f is not None and g["latency_ms"] == 0 and f["members"] >= 1000:
            ok = f["all_delivered"] and f["last_ms_median"] <= FANOUT_TARGET_MS
            out.append(f"{db}: last of {f['members']} deliveries, no added latency: {f['last_ms_median']:.0f} ms "
                       f"(target {FANOUT_TARGET_MS} ms){_lost(f)}: {'met' if ok else 'not met'}")
        if "storm" in g:
            st = g["storm"]
            ok = st["errors"] == 0 and st["all_joined_s"] is not None and st["all_joined_s"] <= STORM_JOIN_TARGET_S
            out.append(f"{db}: join storm of {st['clients']}: {st['errors']} failed joins, "
                       + (f"all answered in {st['all_joined_s']:.1f} s" if st["all_joined_s"] is not None else f"{st['joined']} answered")
                       + f" (target: none failed, all within {STORM_JOIN_TARGET_S} s): {'met' if ok else 'not met'}")
            if f is None:
                out.append(f"{db}: then one chat_message to all of them (target {STORM_FANOUT_TARGET_MS} ms): not measured "
                           "(the joins were not all answered): not met")
                continue
            ok = f["all_delivered"] and f["last_ms_median"] < STORM_FANOUT_TARGET_MS
            out.append(f"{db}: then one chat_message to the {f['members']}, +{g['latency_ms']:g} ms per post: last delivery "
                       f"{f['last_ms_median']:.0f} ms (target {STORM_FANOUT_TARGET_MS} ms){_lost(f)}: {'met' if ok else 'not met'}")
    return out


def _lost(fanout_result: dict[str, Any]) -> str:
    short = [r["delivered"] for r in fanout_result["runs"] if r["delivered"] < fanout_result["members"]]
    return f", only {min(short)} of {fanout_result['members']} delivered" if short else ""


def markdown(result: dict[str, Any]) -> str:
    """One table: every measurement, labelled with the gateway's database (and added @connections latency)."""
    lines = [f"real template.yaml, {result['cpus']} CPUs, Python {result['python']}", "",
             "| measurement | database | figure |", "| --- | --- | --- |"]
    gateways = result["gateways"]

    def row(what: str, g: dict[str, Any], figure: str) -> None:
        lines.append(f"| {what} | {DATABASE_NAMES[g['dynamodb']]} | {figure} |")

    for g in gateways:
        row(f"`parley dev` start to ready line (+{g['latency_ms']:g} ms gateway)", g, f"{g['startup_s']:.1f} s")
    for g in (g for g in gateways if "rtt" in g):
        r = g["rtt"]
        row("ping RTT, bare websockets echo server: p50 / p99", g, f"{r['echo']['p50_ms']:.2f} / {r['echo']['p99_ms']:.2f} ms")
        row("ping RTT through the gateway: p50 / p99", g, f"{r['gateway']['p50_ms']:.2f} / {r['gateway']['p99_ms']:.2f} ms "
            f"({r['ratio_p50']:.1f}x / {r['ratio_p99']:.1f}x)")
    for g in gateways:
        o = g["open"]
        row(f"{o['n']} connections opened (+{g['latency_ms']:g} ms gateway), {o['errors']} errors", g,
            f"{o['seconds']:.2f} s, {o['per_s']:.0f}/s")
    for g in (g for g in gateways if "ping_burst" in g):
        b = g["ping_burst"]
        row("one ping on each connection at once", g, f"{b['seconds']:.2f} s, {b['per_s']:.0f} pongs/s")
        if "joins" in g:
            j = g["joins"]
            row(f"join_room into a room growing to {j['room_growing_to']}: p50 / p99", g, f"{j['p50_ms']:.0f} / {j['p99_ms']:.0f} ms")
        t = g["throughput"]
        row(f"{t['messages']} chat messages in {t['rooms']} rooms of {t['room_size']}", g,
            f"{t['deliveries']} deliveries in {t['seconds']:.2f} s: {t['deliveries_per_s']:.0f}/s "
            f"(latency p50 {t['latency_p50_ms']:.0f} ms, p99 {t['latency_p99_ms']:.0f} ms)")
    for g in (g for g in gateways if "storm" in g):
        st = g["storm"]
        row(f"join storm: {st['clients']} clients send join_room into one room at once (+{g['latency_ms']:g} ms per post)", g,
            f"{st['joined']} answered, {st['errors']} failed{' ' + str(st['error_codes']) if st['error_codes'] else ''}; "
            + (f"all within {st['all_joined_s']:.1f} s (p50 {st['p50_s']:.1f} s)" if st["all_joined_s"] is not None
               else f"not all within {st['timeout_s']:g} s")
            + f"; JoinRoom environments at peak {storm_environments(st)}; CPU {cpu_text(st['cpu_s'])}")
    for g in (g for g in gateways if g["fanout"] is not None):
        f = g["fanout"]
        where = "the storm's room" if "storm" in g else "a seeded room"
        row(f"fan-out to {f['members']} in {where}, +{g['latency_ms']:g} ms per post: first / last delivery (median of {len(f['runs'])})", g,
            f"{f['first_ms_median']:.0f} / {f['last_ms_median']:.0f} ms; CPU {cpu_text(f['runs'][-1]['cpu_s'])}")
    for g in (g for g in gateways if "shutdown" in g):
        s = g["shutdown"]
        row(f"Ctrl-C with {s['open_sockets']} sockets open (+{g['latency_ms']:g} ms gateway)", g,
            f"exit {s['exit_code']} after {s['seconds']:.1f} s, {s['disconnects']} `$disconnect`" if s["seconds"] is not None
            else "no exit in 90 s")
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(), "connections": args.connections,
                              "load": os.getloadavg(), "gateways": []}
    started = time.perf_counter()
    for dynamodb in args.databases:
        for i, latency in enumerate(args.latencies):
            print(f"gateway with --dynamodb {dynamodb} --post-latency-ms {latency:g}", flush=True)
            result["gateways"].append(await run_gateway(args, latency, dynamodb, first=i == 0 and not args.fanout_only))
            if args.json:  # after each gateway, so that a later failure keeps what was measured
                args.json.write_text(json.dumps(result, indent=1))
    result["seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.0, 20.0], help="--post-latency-ms of each gateway")
    parser.add_argument("--databases", nargs="+", choices=("local", "moto"), default=["local", "moto"],
                        help="`parley dev --dynamodb` of each gateway: every measurement runs on each, in this run")
    parser.add_argument("--fanout-repeat", type=int, default=3)
    parser.add_argument("--rooms", type=int, default=10, help="rooms sharing the connections for the delivery rate")
    parser.add_argument("--messages", type=int, default=5, help="chat messages per room's sender (rate limit: 30 per 10 s)")
    parser.add_argument("--open-concurrency", type=int, default=50)
    parser.add_argument("--joins", type=int, default=50, help="real join_room calls timed (into a separate room)")
    parser.add_argument("--storm", type=int, choices=(0, 1), default=1,
                        help="1: on the --storm-latency gateway the connections are distinct users who join one room at once")
    parser.add_argument("--storm-latency", type=float, default=20.0, help="--post-latency-ms of the gateway that gets the join storm")
    parser.add_argument("--storm-timeout", type=float, default=90.0, help="how long the storm's joins are waited for (target: 60 s)")
    parser.add_argument("--fanout-only", action="store_true",
                        help="measure only the fan-out (5): no ping, join, throughput, storm or Ctrl-C measurements")
    parser.add_argument("--repo", type=Path, default=REPO, help="run `parley dev` from this checkout (to compare versions)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    print()
    print(markdown(result))
    print()
    for line in targets(result):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
