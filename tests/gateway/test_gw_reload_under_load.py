"""Code reload under load (issue 15): a save while many invocations are in flight drops nobody.

The real template and handlers, served from a private copy of the project (`copy_stack`), over real sockets:
a burst from one sender, or a sharded fan-out to a room of 30, is under way when the layer, a function's
app.py or the template is saved. The copy's code tags what it sends with a module constant (`BUILD`), so
every frame says which code built it; the save changes that constant. The one-socket-at-a-time reload
tests are in test_gw_redeploy.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from parley_testing.chat_client import Client, joined_clients
from parley_testing.gateway_thread import RunningGateway
from parley_testing.redeploys import edit, lines_with
from parley_testing.template import ROOT
from parley_testing.waiting import wait_for_async

TEMPLATE = ROOT / "template.yaml"
PHASE = 50  # frames per part of the burst: before the save, while it is being noticed, after the reload line
SHARD = 10  # FanoutShardSize's MinValue: a room of 30 is three shards, each its own FanoutFunction invocation
MEMBERS = 30
ROOM_PHASE = 6  # messages per part of the fan-out's burst

pytestmark = pytest.mark.skipif(not TEMPLATE.exists(), reason="needs the real template.yaml")

# The copy's layer tags every frame it builds ("layer"), its chat_message function its reply ("app"), its
# fan-out function each frame it delivers ("fanout"): each with its own module's BUILD.
PLAIN_FRAME = 'def frame(type_name: str, data: dict[str, Any]) -> dict[str, Any]:\n    return {"type": type_name, "data": data}\n'
TAGGED_FRAME = 'BUILD = "before"\n\n\n' + PLAIN_FRAME.replace('"data": data}', '"data": data, "layer": BUILD}')
SAVED_BUILD = ('BUILD = "before"', 'BUILD = "after"')  # the save: a visible change of behaviour


def chat_app(init: str = "") -> str:
    """The copy's chat_message function: its route's reply (the chat_update) carries BUILD; `init` runs at import."""
    return f'''"""The test's copy: the reply carries BUILD, so the test can tell which code answered."""
import json
import time

from parley.aws.lambda_routes import message_route

BUILD = "before"
{init}
_route = message_route("chat_message")


def lambda_handler(event, context):
    response = _route(event, context)
    if "body" in response:
        response["body"] = json.dumps({{**json.loads(response["body"]), "app": BUILD}})
    return response
'''


FANOUT_APP = '''"""The test's copy: each shard tags the frame it delivers with BUILD and logs which shard it ran."""
import json

from parley.aws.lambda_routes import fanout_route

BUILD = "before"
_fanout = fanout_route()


def lambda_handler(event, context):
    if "frame" in event:
        print(f"shard {event['deliveryId']}/{event['shard']} on build {BUILD}")
        event = {**event, "frame": json.dumps({**json.loads(event["frame"]), "fanout": BUILD})}
    return _fanout(event, context)
'''


class Inbox:
    """Every frame one socket receives, in order, read by a task of its own: a burst's answers are read
    while the burst is still being sent, and `index()` marks what had arrived at a given moment."""

    def __init__(self, client: Client):
        self.client = client
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.client.ws:
            self.frames.append(json.loads(raw))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == type_]

    def strays(self) -> list[dict[str, Any]]:
        """What a burst's sender must not get: an error, API Gateway's "Internal server error", anything else."""
        return [f for f in self.frames if f.get("type") not in ("message_received", "chat_update")]

    def index(self) -> int:
        return len(self.frames)

    async def close(self) -> None:
        await self.client.ws.close()
        await asyncio.wait_for(self._reader, 10)


@pytest.fixture
def project(copy_stack: Callable[..., Path]) -> Path:
    """A private copy of the project (template, functions, layer) whose code tags its frames."""
    root = copy_stack(TEMPLATE, ("functions", "layers")).parent
    edit(root / "layers/common/python/parley/core/protocol.py", PLAIN_FRAME, TAGGED_FRAME)
    (root / "functions/chat_message/app.py").write_text(chat_app())
    (root / "functions/fanout/app.py").write_text(FANOUT_APP)
    return root


def serving(project: Path, tmp_path: Path, **overrides: str) -> Iterator[RunningGateway]:
    g = RunningGateway(project / "template.yaml", tmp_path / "records", stack_name="parley", reload_interval=0.1,
                       worker_idle_timeout=0, overrides={"ChatRateLimit": "10000", **overrides}).start()
    assert g.gateway.lambda_api is not None
    g.gateway.lambda_api.retry_delays_s = (0.05, 0.05)  # a retry would show at once
    yield g
    g.stop()


@pytest.fixture
def gw(project: Path, tmp_path: Path) -> Iterator[RunningGateway]:
    yield from serving(project, tmp_path)


@pytest.fixture
def sharded_gw(project: Path, tmp_path: Path) -> Iterator[RunningGateway]:
    yield from serving(project, tmp_path, FanoutShardSize=str(SHARD))


@pytest.fixture
def hung_gw(project: Path, tmp_path: Path) -> Iterator[RunningGateway]:
    """The chat_message function's code hangs in its init, as a call at import to an address that never answers."""
    (project / "functions/chat_message/app.py").write_text(chat_app(init='print("hung in init", flush=True)\ntime.sleep(600)'))
    yield from serving(project, tmp_path)


def statuses(g: RunningGateway, route: str) -> list[str]:
    """The status of each invocation line of `route` (a route key, or a function for an Invoke) so far."""
    line = re.compile(rf"^\d\d:\d\d:\d\d {re.escape(route)}\s.* ms  (\S+)")
    return [m.group(1) for m in map(line.match, list(g.console.lines)) if m]


async def pair_in(g: RunningGateway, room: str) -> tuple[Client, Client]:
    """A sender and a listener, both in `room`, with nothing left to read."""
    sender, listener = await Client.open(g, "sender", "Sender"), await Client.open(g, "listener", "Listener")
    for client in (sender, listener):
        await client.send("join_room", roomId=room)
        await client.expect("chat_history")
    await sender.expect("user_joined")
    return sender, listener


async def send_burst(sender: Client, room: str, part: str, count: int) -> list[str]:
    """`count` chat_message frames sent back to back, none waiting for an answer; their clientMessageIds."""
    ids = [f"{part}-{n}" for n in range(count)]
    for cid in ids:
        await sender.send("chat_message", roomId=room, message=f"{part} message", clientMessageId=cid)
    return ids


def answered(inbox: Inbox, listener: Inbox, sent: list[str]) -> bool:
    """Every frame of the burst answered, or the sender got something else (`answers` then says what)."""
    return bool(len(inbox.of("chat_update")) >= len(sent) and len(listener.of("message_received")) >= len(sent) or inbox.strays())


def answers(inbox: Inbox, sent: list[str], listener: Inbox) -> dict[str, tuple[int, int]]:
    """clientMessageId -> (index of its message_received, index of its chat_update) in the sender's frames,
    checking that the burst was answered as PROTOCOL.md says: one message_received per frame (to the sender
    and to the listener, the same messageId), then, after it, one chat_update for it; nothing else."""
    assert inbox.strays() == []
    received = {f["data"]["clientMessageId"]: i for i, f in enumerate(inbox.frames) if f.get("type") == "message_received"}
    assert len(inbox.of("message_received")) == len(sent) and sorted(received) == sorted(sent)  # none lost, none twice
    message_ids = {cid: inbox.frames[i]["data"]["messageId"] for cid, i in received.items()}
    assert len(set(message_ids.values())) == len(sent)
    updates = {f["data"]["messageId"]: i for i, f in enumerate(inbox.frames) if f.get("type") == "chat_update"}
    assert len(inbox.of("chat_update")) == len(sent) and set(updates) == set(message_ids.values())
    assert {(f["data"]["status"], f["data"]["deliveredTo"]) for f in inbox.of("chat_update")} == {("delivered", 1)}
    heard = Counter((f["data"]["clientMessageId"], f["data"]["messageId"]) for f in listener.of("message_received"))
    assert heard == Counter(message_ids.items())  # the listener: each message once, the sender's messageId
    order = {cid: (received[cid], updates[message_ids[cid]]) for cid in sent}
    assert all(first < second for first, second in order.values())  # message_received, then its chat_update
    return order


SAVES = {
    # what is saved: (the file under the copy, the edit, its one line, the tag that tells, what answers after the line)
    "layer": ("layers/common/python/parley/core/protocol.py", SAVED_BUILD,
              r"^Reloaded AuthorizerFunction, .*ChatMessageFunction, .*FanoutFunction, .* \(\S+/parley/core/protocol\.py changed\): ",
              "layer", "after"),
    "app.py": ("functions/chat_message/app.py", SAVED_BUILD, r"^Reloaded ChatMessageFunction \(\S+/functions/chat_message/app\.py changed\): ",
               "app", "after"),
    "template, unchanged": ("template.yaml", ("Transform: AWS::Serverless-2016-10-31\n", "Transform: AWS::Serverless-2016-10-31\n# saved\n"),
                            r"^Template reloaded: no function changed$", "layer", "before"),
}


def said(g: RunningGateway, pattern: str) -> list[str]:
    return [line for line in list(g.console.lines) if re.search(pattern, line)]


@pytest.mark.parametrize("saved", list(SAVES))
async def test_a_burst_from_one_sender_across_a_save_is_answered_once_each_by_the_code_of_its_moment(
        saved: str, gw: RunningGateway, project: Path):
    """150 chat_message frames sent without waiting: 50, the save once ten are answered, 50 while the gateway
    notices it, 50 after its line. Every frame gets its message_received then its chat_update, once; the
    listener hears each once; nothing fails; the socket stays open. What was answered before the save was
    built by the old code, everything sent after the line by the new (a template saved unchanged retires
    nothing: the old code answers throughout). One line says so."""
    path, (old, new), line, tag, after = SAVES[saved]
    room = "burst"
    sender, listener = await pair_in(gw, room)
    inbox, heard = Inbox(sender), Inbox(listener)
    early = await send_burst(sender, room, "early", PHASE)
    await wait_for_async(lambda: len(inbox.of("chat_update")) >= 10, 60, what="the burst's first answers")
    before_save = inbox.index()
    edit(project / path, old, new)
    during = await send_burst(sender, room, "during", PHASE)
    await wait_for_async(lambda: said(gw, line), 15, what=f"the line {line!r}")
    late = await send_burst(sender, room, "late", PHASE)
    sent = early + during + late
    await wait_for_async(lambda: answered(inbox, heard, sent), 30, what="every frame answered")
    await asyncio.sleep(0.5)  # a duplicate or a late error would be here by now
    order = answers(inbox, sent, heard)
    assert any(order[cid][1] >= before_save for cid in early), "the first part was answered before the save: nothing was in flight"

    def build(cid: str) -> str:
        """The code that answered the frame: its chat_update's tag (and its message_received's, from the same invocation)."""
        received, update = (inbox.frames[i] for i in order[cid])
        assert received.get(tag, update[tag]) == update[tag], (received, update)  # the app tags only its reply
        return update[tag]

    assert {cid: build(cid) for cid in sent if order[cid][1] < before_save} == {cid: "before" for cid in sent if order[cid][1] < before_save}
    assert {build(cid) for cid in late} == {after}
    assert {build(cid) for cid in sent} <= {"before", "after"}
    assert statuses(gw, "chat_message") == ["200"] * len(sent)  # one invocation per frame, none failed
    reloads = lines_with(gw, "Reloaded") + lines_with(gw, "Template reloaded")
    assert reloads == said(gw, line) and len(reloads) == 1, reloads
    await sender.send("ping")
    await wait_for_async(lambda: inbox.of("pong"), 15, what="the pong")  # the same socket, still served
    await inbox.close()
    await heard.close()


async def test_a_fan_out_to_a_room_across_a_save_of_the_fan_out_function_reaches_every_member_once(
        sharded_gw: RunningGateway, project: Path):
    """A room of 30 with a shard size of 10: each message is three FanoutFunction invocations. 18 messages
    sent without waiting, FanoutFunction's app.py saved once members have started to receive them. Every
    member receives every message once, each shard ran once and none failed; what members received before
    the save was delivered by the old code, every message sent after the reload line by the new."""
    g, room = sharded_gw, "fanout"
    members = await joined_clients(g, room, MEMBERS, "m")
    sender = members[0]
    inboxes = [Inbox(member) for member in members]

    def messages(inbox: Inbox) -> list[dict[str, Any]]:
        return [f for f in inbox.of("message_received") if f["data"].get("clientMessageId")]

    early = await send_burst(sender, room, "early", ROOM_PHASE)
    await wait_for_async(lambda: sum(map(len, map(messages, inboxes))) >= MEMBERS, 60, what="the first shards delivered")
    before_save = [len(messages(inbox)) for inbox in inboxes]
    edit(project / "functions/fanout/app.py", *SAVED_BUILD)
    during = await send_burst(sender, room, "during", ROOM_PHASE)
    reloaded = r"^Reloaded FanoutFunction \(\S+/functions/fanout/app\.py changed\): "
    await wait_for_async(lambda: said(g, reloaded), 15, what="the reload line")
    late = await send_burst(sender, room, "late", ROOM_PHASE)
    sent = early + during + late
    await wait_for_async(lambda: all(len(messages(inbox)) >= len(sent) for inbox in inboxes), 30,
                         what="every message at every member")
    await wait_for_async(lambda: len([f for f in inboxes[0].of("chat_update") if f["data"]["roomId"] == room]) >= len(sent), 15,
                         what="every chat_update")
    await asyncio.sleep(1.0)  # a duplicate (a shard run twice) would be here by now

    updates = inboxes[0].of("chat_update")
    assert {(u["data"]["status"], u["data"]["recipients"]) for u in updates} == {("sent", MEMBERS - 1)}
    assert len(updates) == len(sent)
    assert any(f["data"]["clientMessageId"] in early for inbox, seen in zip(inboxes, before_save) for f in messages(inbox)[seen:]), \
        "the first messages had reached everyone before the save: no shard of theirs was in flight"
    for inbox, seen_before in zip(inboxes, before_save):
        got = messages(inbox)
        assert Counter(f["data"]["clientMessageId"] for f in got) == Counter(sent), inbox.client.user  # each once
        assert {f["data"]["messageId"] for f in got} == {u["data"]["messageId"] for u in updates}
        assert {f["fanout"] for f in got[:seen_before]} <= {"before"}
        assert {f["fanout"] for f in got if f["data"]["clientMessageId"] in late} == {"after"}
        assert {f["fanout"] for f in got} <= {"before", "after"}
    shards = Counter(tuple(re.findall(r"shard (\w+)/(\d)", line)[0]) for line in lines_with(g, "] shard "))
    ours = {(u["data"]["messageId"], str(n)) for u in updates for n in range(MEMBERS // SHARD)}
    assert {k: v for k, v in shards.items() if k in ours} == dict.fromkeys(ours, 1)  # every shard of every message ran once
    assert set(statuses(g, "FanoutFunction")) == {"ok"}
    assert not lines_with(g, "asynchronous invocation")  # no failed attempt, no retry
    assert len(lines_with(g, "Reloaded")) == len(said(g, reloaded)) == 1
    for inbox in inboxes:
        await inbox.close()


async def test_a_save_while_environments_start_serves_the_waiting_frames_on_the_new_code(hung_gw: RunningGateway, project: Path):
    """The code on disk hangs in its init (a call that never returns at import); a burst waits for the
    environments starting on it; the developer saves a fix. The reload line says the next invocation
    cold-starts on the new code: the waiting frames and those sent after the line are answered by it, each
    once, without waiting for the hung init to time out (INIT_TIMEOUT_S, 30 s: before the fix, they all did)."""
    gw, room = hung_gw, "starting"
    sender, listener = await pair_in(gw, room)
    inbox, heard = Inbox(sender), Inbox(listener)
    waiting = await send_burst(sender, room, "waiting", 20)
    await wait_for_async(lambda: lines_with(gw, "[ChatMessageFunction] hung in init"), 15, what="an environment hung in its init")
    (project / "functions/chat_message/app.py").write_text(chat_app().replace(*SAVED_BUILD))
    await wait_for_async(lambda: said(gw, SAVES["app.py"][2]), 15, what="the reload line")
    late = await send_burst(sender, room, "late", 20)
    sent = waiting + late
    await wait_for_async(lambda: answered(inbox, heard, sent), 15, what="every frame answered by the saved code")  # the hung init: 30 s
    await asyncio.sleep(0.5)
    order = answers(inbox, sent, heard)
    assert {inbox.frames[update]["app"] for _, update in order.values()} == {"after"}
    assert statuses(gw, "chat_message") == ["200"] * len(sent)
    assert len(lines_with(gw, "Reloaded")) == 1
    pool = gw.gateway.runtime.pools["ChatMessageFunction"]  # type: ignore[union-attr]
    assert gw.call(lambda: pool.starting) == 0  # the hung start was stopped, not left to time out
    await inbox.close()
    await heard.close()
