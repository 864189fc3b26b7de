"""Load benchmark through the local gateway (`parley dev`, the real template.yaml and handlers): issue 5, section 6.

1. Opens `--connections` WebSockets (one user each, dev HS256 tokens) and joins them to `--rooms`
   rooms (bounded concurrency), timing connect + join.
2. Burst: `--senders` senders (spread over the rooms) each send `--messages` chat messages,
   sequentially (the next after the previous one's `chat_update`), all senders at once. Rate stays
   under the per-user allowance (30 per 10 s).
3. Flood isolation: one connection per room ("others") chats at a normal rate twice, first alone
   (baseline), then while a `flooder` in room 0 sends `--flood-rate` frames/s, far over the
   allowance, until the gateway closes it (10x the allowance in one window -> DeleteConnection).
4. Verification: every connection got exactly the messages stored for its room (checked against
   a Query of MessagesTable per room, and against what the senders were told): none lost, none
   duplicated, none from another room, each sender's messages in order; `deliveredTo` is the
   room's size minus one.

Prints a markdown table (figures: connections, accepted messages/s, delivered frames/s, delivery
latency p50/p99 from send to arrival at each other recipient, flood ratio). Exit status 1 when a
check fails. Every wait is bounded; `--timeout` bounds the whole run.

Usage: .venv/bin/python benchmarks/load_bench.py [--connections 1000] [--rooms 20] [--senders 100]
       [--messages 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import os
import platform
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

from parley_local.tokens import make_token
from parley_testing.dev_process import DevProcess
from parley_testing.ports import free_port

CHAT_ALLOWANCE = 30  # template default ChatRateLimit per RateWindowSeconds (10 s)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# ---- the gateway subprocess ------------------------------------------------------------------


class DevServer:
    """`parley dev --quiet` on a free 127.0.0.1 port (a `DevProcess`), its output in a log file;
    counts handler errors and tracebacks in it."""

    def __init__(self, log_path: str, stack: str):
        self.log_path = log_path
        self.stack = stack
        self.dev: DevProcess | None = None
        self.lines = collections.Counter()

    def _count(self, line: str) -> None:
        if '"level":"ERROR"' in line:
            self.lines["handler_error"] += 1
        elif "Traceback" in line:  # e.g. moto answering a request with a 500 (botocore retries it)
            self.lines["traceback"] += 1
        elif '"level":"WARNING"' in line:
            self.lines["handler_warning"] += 1

    def start(self, timeout: float = 120) -> float:
        self._log = log = open(self.log_path, "w")
        self.dev = DevProcess(["--host", "127.0.0.1", "--port", str(free_port()), "--stack-name", self.stack, "--quiet"],
                              log=log, on_line=self._count)
        try:
            self.dev.wait_ready(timeout)
        except AssertionError:
            self.stop()
            raise SystemExit(f"parley dev did not become ready within {timeout:.0f} s; see {self.log_path}") from None
        return self.dev.ready_s

    def stop(self) -> None:
        if self.dev is not None:
            self.dev.stop(signal.SIGINT, 30)
            self.dev.reader.join(5)
            self._log.close()

    def stored(self, rooms: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The messages stored per room (one paginated Query each; no Scan)."""
        import boto3

        ddb = boto3.client("dynamodb", endpoint_url=self.dev.dynamodb_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        table = next(n for n in ddb.list_tables()["TableNames"] if n.startswith(self.stack + "-") and n.endswith("MessagesTable"))
        out = {}
        for room in rooms:
            items: list[dict[str, Any]] = []
            for page in ddb.get_paginator("query").paginate(
                TableName=table, KeyConditionExpression="roomId = :r", ExpressionAttributeValues={":r": {"S": room}},
            ):
                items += [{k: next(iter(v.values())) for k, v in i.items()} for i in page["Items"]]
            out[room] = items
        return out


# ---- clients -----------------------------------------------------------------------------------


@dataclass
class Sent:
    cmid: str
    conn: int
    user: str
    room: str
    seq: int
    phase: str
    t: float
    accepted: bool = False
    delivered_to: int | None = None
    error: str | None = None


@dataclass
class Conn:
    idx: int
    user: str
    room: str
    ws: Any = None
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    control: asyncio.Queue = field(default_factory=asyncio.Queue)
    other: collections.Counter = field(default_factory=collections.Counter)
    gateway_errors: list[str] = field(default_factory=list)
    close_code: int | None = None
    replies: int = 0  # chat_update + error frames so far
    replied: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float | None = None
    task: asyncio.Task | None = None

    async def read(self) -> None:
        try:
            async for raw in self.ws:
                t = time.perf_counter()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind is None:  # API Gateway's own {"message": "Internal server error", ...}
                    self.gateway_errors.append(raw[:200])
                elif kind == "message_received":
                    self.received.append((t, frame["data"]))
                elif kind in ("chat_update", "error", "chat_history"):
                    self.control.put_nowait((t, frame))
                    if kind != "chat_history":
                        self.replies += 1
                        self.replied.set()
                else:
                    self.other[kind] += 1
        except ConnectionClosed:
            pass
        finally:
            self.closed_at = time.perf_counter()
            self.close_code = self.ws.close_code

    async def expect(self, kinds: set[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.user}: no {kinds} within {timeout} s")
            _, frame = await asyncio.wait_for(self.control.get(), left)
            if frame["type"] in kinds:
                return frame


class Bench:
    def __init__(self, args: argparse.Namespace, server: DevServer):
        self.args = args
        self.server = server
        tag = time.strftime("%H%M%S")
        self.rooms = [f"load-{tag}-{r:02d}" for r in range(args.rooms)]
        self.conns: list[Conn] = []
        self.sent: dict[str, Sent] = {}
        self.figures: dict[str, Any] = {}
        self.failures: list[str] = []
        self.flooder: Conn | None = None
        self.flood_room = ""

    async def open(self, idx: int, user: str, room: str, sem: asyncio.Semaphore, stats: list[float]) -> Conn:
        async with sem:
            conn = Conn(idx, user, room)
            t = time.perf_counter()
            conn.ws = await websockets.connect(
                f"{self.server.dev.ws_url}?token={make_token(user, user.upper(), 3600)}",
                open_timeout=120, compression=None, max_queue=None, ping_interval=None, close_timeout=5,
            )
            conn.task = asyncio.create_task(conn.read())
            await conn.ws.send(json.dumps({"type": "join_room", "data": {"roomId": room, "limit": 1}}))
            await conn.expect({"chat_history"}, 120)
            stats.append((time.perf_counter() - t) * 1000)
            return conn

    async def connect_all(self) -> None:
        a = self.args
        sem = asyncio.Semaphore(a.concurrency)
        stats: list[float] = []
        t = time.perf_counter()
        self.conns = list(await asyncio.gather(*(
            self.open(i, f"u{i:04d}", self.rooms[i % a.rooms], sem, stats) for i in range(a.connections)
        )))
        wall = time.perf_counter() - t
        self.figures["connect"] = {
            "connections": len(self.conns), "rooms": a.rooms, "wall_s": round(wall, 2),
            "per_s": round(len(self.conns) / wall, 1), "p50_ms": round(pct(stats, 50), 1), "p99_ms": round(pct(stats, 99), 1),
        }

    def members(self, room: str) -> list[Conn]:
        return [c for c in self.conns if c.room == room]

    async def chat(self, conn: Conn, phase: str, count: int, interval: float = 0.0, delay: float = 0.0) -> None:
        """`count` messages, one after the other: the next once the previous one's chat_update came back
        (and `interval` s after the previous one began), the first after `delay` s."""
        await asyncio.sleep(delay)
        for seq in range(count):
            began = time.perf_counter()
            cmid = f"{phase}-{conn.idx}-{seq}"
            s = self.sent[cmid] = Sent(cmid, conn.idx, conn.user, conn.room, seq, phase, time.perf_counter())
            await conn.ws.send(json.dumps({"type": "chat_message", "data": {
                "roomId": conn.room, "message": f"{phase} from {conn.user} #{seq}", "clientMessageId": cmid}}))
            reply = (await conn.expect({"chat_update", "error"}, 120))["data"]
            if reply.get("status") == "delivered":
                s.accepted, s.delivered_to = True, reply["deliveredTo"]
            else:
                s.error = reply.get("code")
            if interval:
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - began)))

    def expected_deliveries(self, phase: str) -> int:
        sizes = collections.Counter(c.room for c in self.conns)
        return sum(sizes[s.room] for s in self.sent.values() if s.phase == phase and s.accepted)

    def arrivals(self, phase: str) -> list[tuple[Conn, float, dict[str, Any]]]:
        return [(c, t, d) for c in self.conns for t, d in c.received if d.get("clientMessageId", "").startswith(phase + "-")]

    async def settle(self, phase: str, timeout: float = 120) -> None:
        """Wait (bounded) until every recipient got every accepted message of `phase`, then 0.5 s for extras."""
        want = self.expected_deliveries(phase)
        deadline = time.monotonic() + timeout
        while len(self.arrivals(phase)) < want and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)

    def latencies(self, phase: str, until: float | None = None) -> list[float]:
        out = []
        for conn, t, d in self.arrivals(phase):
            s = self.sent[d["clientMessageId"]]
            if s.conn != conn.idx and (until is None or s.t <= until):
                out.append((t - s.t) * 1000)
        return out

    async def burst(self) -> None:
        a = self.args
        per_room = a.connections // a.rooms
        if a.senders > a.rooms * (per_room - 1):
            raise SystemExit("--senders: at most (connections/rooms - 1) per room (one per room is kept for the flood phase)")
        senders = [self.members(self.rooms[s % a.rooms])[s // a.rooms] for s in range(a.senders)]
        t0 = time.perf_counter()
        await asyncio.gather(*(self.chat(c, "burst", a.messages) for c in senders))
        t1 = time.perf_counter()
        await self.settle("burst")
        arrivals = self.arrivals("burst")
        accepted = [s for s in self.sent.values() if s.phase == "burst" and s.accepted]
        last = max((t for _, t, _ in arrivals), default=t1)
        lat = self.latencies("burst")
        self.figures["burst"] = {
            "senders": a.senders, "messages_per_sender": a.messages, "sent": a.senders * a.messages, "accepted": len(accepted),
            "rejected": collections.Counter(s.error for s in self.sent.values() if s.phase == "burst" and not s.accepted),
            "wall_s": round(t1 - t0, 2), "accepted_per_s": round(len(accepted) / (t1 - t0), 1),
            "frames_delivered": len(arrivals), "frames_expected": self.expected_deliveries("burst"),
            "delivered_per_s": round(len(arrivals) / (last - t0), 1),
            "latency_p50_ms": round(pct(lat, 50), 1), "latency_p99_ms": round(pct(lat, 99), 1), "latency_max_ms": round(max(lat, default=0), 1),
        }

    async def flood_phases(self) -> None:
        a = self.args
        sem = asyncio.Semaphore(1)
        self.flood_room = self.rooms[0] if a.flood_room == "shared" else self.rooms[0].rsplit("-", 1)[0] + "-flood"
        self.flooder = await self.open(a.connections, "flooder", self.flood_room, sem, [])
        others = [self.members(room)[-1] for room in self.rooms]
        # baseline: the others alone
        stagger = a.normal_interval / len(others)  # a steady rate, not 20 messages at once every interval
        await asyncio.gather(*(self.chat(c, "base", a.normal_messages, a.normal_interval, i * stagger) for i, c in enumerate(others)))
        await self.settle("base")
        await asyncio.sleep(1.0)
        # the same again while the flooder floods
        flood = asyncio.create_task(self.flood(self.flooder))
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        await asyncio.gather(*(self.chat(c, "flood", a.normal_messages, a.normal_interval, i * stagger) for i, c in enumerate(others)))
        others_done = time.perf_counter()
        stats = await asyncio.wait_for(flood, a.flood_seconds + 30)
        await self.settle("flood")
        await self.settle("fl")  # the flooder's own accepted messages
        base, under = self.latencies("base"), self.latencies("flood", until=self.flooder.closed_at)
        stats.update(
            others=len(others), others_messages_each=a.normal_messages, others_interval_s=a.normal_interval,
            others_sent_while_flooding=sum(1 for s in self.sent.values() if s.phase == "flood" and s.t <= (self.flooder.closed_at or others_done)),
            others_rejected=sum(1 for s in self.sent.values() if s.phase in ("base", "flood") and not s.accepted),
            base_p50_ms=round(pct(base, 50), 1), base_p99_ms=round(pct(base, 99), 1),
            flood_p50_ms=round(pct(under, 50), 1), flood_p99_ms=round(pct(under, 99), 1),
            ratio_p50=round(pct(under, 50) / pct(base, 50), 2) if base else None,
            ratio_p99=round(pct(under, 99) / pct(base, 99), 2) if base else None,
            others_window_s=round(others_done - t0, 2),
        )
        self.figures["flood"] = stats

    async def flood(self, conn: Conn) -> dict[str, Any]:
        """Send at up to `--flood-rate` frames/s, at most `--flood-inflight` unanswered, until the gateway
        closes the socket or `--flood-seconds` pass."""
        a = self.args
        t0 = time.perf_counter()
        sent = 0
        base_replies = conn.replies
        while conn.closed_at is None and time.perf_counter() - t0 < a.flood_seconds:
            due = t0 + sent / a.flood_rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            while sent - (conn.replies - base_replies) >= a.flood_inflight and conn.closed_at is None:
                conn.replied.clear()
                try:
                    await asyncio.wait_for(conn.replied.wait(), 1.0)
                except (TimeoutError, asyncio.TimeoutError):
                    if time.perf_counter() - t0 > a.flood_seconds:
                        break
            if conn.closed_at is not None or time.perf_counter() - t0 >= a.flood_seconds:
                break
            cmid = f"fl-{sent}"
            self.sent[cmid] = Sent(cmid, conn.idx, conn.user, conn.room, sent, "fl", time.perf_counter())
            try:
                await conn.ws.send(json.dumps({"type": "chat_message", "data": {"roomId": conn.room, "message": f"flood #{sent}", "clientMessageId": cmid}}))
            except ConnectionClosed:
                break
            sent += 1
        deadline = time.monotonic() + 15
        while conn.closed_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        replies = [f for _, f in list(conn.control._queue)]  # noqa: SLF001 - read what the reader queued
        limited = [f for f in replies if f["type"] == "error" and f["data"].get("code") == "rate_limited"]
        accepted = [f for f in replies if f["type"] == "chat_update"]
        for _, d in conn.received:  # its own copy of each accepted message
            if d.get("clientMessageId", "").startswith("fl-"):
                self.sent[d["clientMessageId"]].accepted = True
        ended = conn.closed_at or time.perf_counter()
        return {
            "flood_room": a.flood_room,
            "flood_rate_cap_per_s": a.flood_rate, "flood_inflight": a.flood_inflight, "flood_frames_sent": sent,
            "flood_rate_achieved_per_s": round(sent / (ended - t0), 1),
            "flood_accepted": len(accepted), "flood_rate_limited": len(limited),
            "retry_after_ms_example": limited[0]["data"].get("retryAfterMs") if limited else None,
            "flooder_closed": conn.closed_at is not None, "flooder_close_code": conn.close_code,
            "flooder_closed_after_s": round(conn.closed_at - t0, 2) if conn.closed_at else None,
        }

    def verify(self) -> None:
        stored = self.server.stored(sorted(set(self.rooms) | {self.flood_room}))
        by_room_stored = {room: {i.get("clientMessageId") for i in items} for room, items in stored.items()}
        sizes = collections.Counter(c.room for c in self.conns)
        lost = dup = foreign = disorder = 0
        for conn in self.conns:
            got = [d["clientMessageId"] for _, d in conn.received]
            want = by_room_stored[conn.room]
            lost += len(want - set(got))
            dup += len(got) - len(set(got))
            foreign += len(set(got) - want)
            last: dict[tuple[int, str], int] = {}
            for cmid in got:
                s = self.sent.get(cmid)
                if s is None or s.phase == "fl":  # the flooder does not wait between frames: no order to keep
                    continue
                if last.get((s.conn, s.phase), -1) >= s.seq:
                    disorder += 1
                last[(s.conn, s.phase)] = s.seq
            if conn.gateway_errors:
                self.failures.append(f"{conn.user}: gateway error frames {conn.gateway_errors[:2]}")
        told = {s.cmid for s in self.sent.values() if s.accepted}
        stored_all = set().union(*by_room_stored.values())
        def other_connections(s: Sent) -> set[int]:
            """deliveredTo: the room's other connections; room 0 has the flooder from the baseline on, until it is closed."""
            n = sizes[s.room] - 1
            if s.room == self.flood_room and s.phase == "base":
                return {n + 1}
            if s.room == self.flood_room and s.phase == "flood":
                return {n, n + 1}  # around the moment the flooder is closed, either is right
            return {n}

        bad_count = [s.cmid for s in self.sent.values() if s.accepted and s.phase != "fl" and s.delivered_to not in other_connections(s)]
        self.figures["verify"] = {
            "stored": len(stored_all), "accepted_told": len(told), "lost": lost, "duplicated": dup, "foreign": foreign,
            "out_of_order": disorder, "accepted_not_stored": len(told - stored_all), "stored_not_accepted": len(stored_all - told),
            "deliveredTo_wrong": len(bad_count), "log_handler_errors": self.server.lines["handler_error"],
            "log_handler_warnings": self.server.lines["handler_warning"], "log_tracebacks": self.server.lines["traceback"],
        }
        v = self.figures["verify"]
        for key in ("lost", "duplicated", "foreign", "out_of_order", "accepted_not_stored", "stored_not_accepted", "deliveredTo_wrong"):
            if v[key]:
                self.failures.append(f"{key}: {v[key]}")
        b, f = self.figures["burst"], self.figures["flood"]
        if b["accepted"] != b["sent"]:
            self.failures.append(f"burst: {b['sent'] - b['accepted']} messages rejected {dict(b['rejected'])}")
        if f["others_rejected"]:
            self.failures.append(f"{f['others_rejected']} normal-rate messages were rejected")
        if not f["flood_rate_limited"]:
            self.failures.append("the flooder never got rate_limited")
        if not f["flooder_closed"]:
            self.failures.append("the flooder was not disconnected")

    async def close(self) -> None:
        conns = self.conns + ([self.flooder] if self.flooder else [])
        for c in conns:
            if c.task:
                c.task.cancel()
        await asyncio.gather(*(c.ws.close() for c in conns if c.ws), return_exceptions=True)


def report(figs: dict[str, Any], failures: list[str]) -> str:
    c, b, f, v, m = figs["connect"], figs["burst"], figs["flood"], figs["verify"], figs["machine"]
    rows = [
        ("date / machine", f"{m['date']}, {m['cpus']} CPUs, load avg {m['load_before']} before, {m['load_after']} after, Python {m['python']}"),
        ("connections (one user each) / rooms", f"{c['connections']} / {c['rooms']}; open + join {c['wall_s']} s ({c['per_s']}/s), per connection p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms"),
        ("burst", f"{b['senders']} senders x {b['messages_per_sender']} messages = {b['sent']} sent, {b['accepted']} accepted in {b['wall_s']} s"),
        ("chat messages accepted / s", f"{b['accepted_per_s']}"),
        ("message_received frames delivered / s", f"{b['delivered_per_s']} ({b['frames_delivered']} of {b['frames_expected']} expected)"),
        ("burst delivery latency p50 / p99 / max", f"{b['latency_p50_ms']} / {b['latency_p99_ms']} / {b['latency_max_ms']} ms"),
        ("others at normal rate, no flood: p50 / p99", f"{f['base_p50_ms']} / {f['base_p99_ms']} ms ({f['others']} senders x {f['others_messages_each']}, each every {f['others_interval_s']} s, staggered)"),
        ("same, while one user floods: p50 / p99", f"{f['flood_p50_ms']} / {f['flood_p99_ms']} ms ({f['others_sent_while_flooding']} messages sent during the flood)"),
        ("flood ratio p50 / p99", f"{f['ratio_p50']} / {f['ratio_p99']}"),
        ("flooder", f"{f['flood_frames_sent']} frames at {f['flood_rate_achieved_per_s']}/s ({f['flood_inflight']} in flight, {f['flood_room']} room): {f['flood_accepted']} accepted, {f['flood_rate_limited']} rate_limited "
                    f"(retryAfterMs e.g. {f['retry_after_ms_example']}), closed {f['flooder_closed']} (code {f['flooder_close_code']}) after {f['flooder_closed_after_s']} s"),
        ("exactly-once check", f"stored {v['stored']}, lost {v['lost']}, duplicated {v['duplicated']}, other rooms' {v['foreign']}, out of order {v['out_of_order']}, "
                               f"deliveredTo wrong {v['deliveredTo_wrong']}; gateway log before shutdown: {v['log_handler_errors']} handler ERROR, "
                               f"{v['log_handler_warnings']} WARNING, {v['log_tracebacks']} tracebacks"),
        ("result", "PASS" if not failures else "FAIL: " + "; ".join(failures)),
    ]
    return "| measurement | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {val} |" for k, val in rows)


async def run(args: argparse.Namespace, server: DevServer, bench: Bench) -> None:
    bench.figures["startup_s"] = round(server.start(), 1)
    try:
        await bench.connect_all()
        print(f"connected: {bench.figures['connect']}", file=sys.stderr)
        await bench.burst()
        print(f"burst: {bench.figures['burst']}", file=sys.stderr)
        await bench.flood_phases()
        print(f"flood: {bench.figures['flood']}", file=sys.stderr)
        await asyncio.to_thread(bench.verify)
    finally:
        await asyncio.wait_for(bench.close(), 60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--messages", type=int, default=5, help="per sender in the burst (keep under the allowance of 30 per 10 s)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections opening and joining at once")
    parser.add_argument("--normal-messages", type=int, default=3, help="per 'other' sender (one per room), in each flood-phase run")
    parser.add_argument("--normal-interval", type=float, default=10.0, help="seconds between a normal sender's messages")
    parser.add_argument("--flood-rate", type=float, default=100.0, help="flooder frames per second at most (allowance: 3/s)")
    parser.add_argument("--flood-room", choices=["own", "shared"], default="own",
                        help="the flooder alone in a room (default), or in room 0 with its members (then its allowed 30 messages "
                             "per 10 s are themselves fanned out to the whole room)")
    parser.add_argument("--flood-inflight", type=int, default=16, help="flooder frames sent but not yet answered, at most")
    parser.add_argument("--flood-seconds", type=float, default=60.0, help="the flooder stops after this long if not disconnected")
    parser.add_argument("--timeout", type=float, default=600.0, help="hard limit for the whole run, seconds")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--log", default="/tmp/parley-load-bench.log", help="the gateway's output")
    args = parser.parse_args()
    if args.messages * 2 > CHAT_ALLOWANCE or args.normal_messages * 2 > CHAT_ALLOWANCE:
        parser.error("--messages / --normal-messages must stay well under the allowance (30 per 10 s)")

    server = DevServer(args.log, f"load{os.getpid()}")
    bench = Bench(args, server)
    load_before = os.getloadavg()
    status = 0
    started = time.monotonic()
    try:
        asyncio.run(asyncio.wait_for(run(args, server, bench), args.timeout))
    except Exception:  # noqa: BLE001 - reported, with the figures gathered so far
        traceback.print_exc()
        print(f"load_bench: failed after {time.monotonic() - started:.0f} s (limit {args.timeout:.0f} s); figures so far: "
              f"{json.dumps(bench.figures, default=str)}", file=sys.stderr)
        status = 2
    finally:
        server.stop()
    if status:
        return status
    bench.figures["machine"] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
        "load_before": " ".join(f"{x:.2f}" for x in load_before), "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(), "platform": platform.platform(),
    }
    bench.figures["failures"] = bench.failures
    print(report(bench.figures, bench.failures))
    if args.json:
        Path(args.json).write_text(json.dumps(bench.figures, indent=2, default=str) + "\n")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
