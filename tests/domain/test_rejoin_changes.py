"""A rejoin's `changed` (PROTOCOL "Reconnecting"): the older messages changed while the client was
away, bounded in number and in bytes, with `moreChanged` saying when the client must read its older
pages again. The rule itself is in `parley_testing.room_rules` (run here and on the handlers)."""

from __future__ import annotations

import json

from parley.core.ids import ulid_at
from parley.core.protocol import CHANGED_FRAME_SHARE, MAX_FRAME_BYTES
from parley.core.service import REJOIN_CHANGES
from parley_testing.room_rules import clock_past_every_id


def wire_size(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def away_from(world, count: int, text: str = "m"):
    """Ann says `count` messages in the lobby; bob (in it) is away from `since`, just after them."""
    clock_past_every_id(world)
    world.use_limits(chat=1000, signals=1000, window_seconds=10)
    ann, bob = world.connect("ann"), world.connect("bob")
    for client in (ann, bob):
        client.send("join_room", {"roomId": "lobby"})
    ids = [ann.send("chat_message", {"roomId": "lobby", "message": f"{n:03d}{text}"})["data"]["messageId"] for n in range(count)]
    world.clock.advance(10)
    since = ulid_at(world.clock())
    world.disconnect(bob)
    return ann, ids, since


def test_at_most_100_changes_newest_first_and_more_changed_once_there_were_more(world):
    ann, ids, since = away_from(world, REJOIN_CHANGES + 1)
    for message_id in ids[:REJOIN_CHANGES]:
        world.clock.advance(1)
        ann.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    whole = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since})["data"]
    assert [m["messageId"] for m in whole["changed"]] == ids[:REJOIN_CHANGES][::-1] and whole["moreChanged"] is False
    world.clock.advance(1)
    ann.send("react", {"roomId": "lobby", "messageId": ids[REJOIN_CHANGES], "emoji": "👍"})
    capped = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since})["data"]
    assert len(capped["changed"]) == REJOIN_CHANGES and capped["moreChanged"] is True
    assert [m["messageId"] for m in capped["changed"]] == ids[1:][::-1], "the newest changes, the oldest left out"


def test_a_message_changed_twice_comes_once_as_it_stands(world):
    ann, ids, since = away_from(world, 2)
    for emoji in ("👍", "🎉"):
        world.clock.advance(1)
        ann.send("react", {"roomId": "lobby", "messageId": ids[0], "emoji": emoji})
    [changed] = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since})["data"]["changed"]
    assert (changed["messageId"], changed["reactions"], changed["version"]) == (ids[0], {"👍": 1, "🎉": 1}, 3)


def test_large_changes_take_at_most_half_the_frame_and_the_page_fills_the_rest(world):
    """A change left out costs the client a re-read of its older pages, a message left out only the
    next catch-up page: the changes are fitted first, into half the 128 KB."""
    ann, ids, since = away_from(world, 30, "é" * 1998)  # 30 messages of 3,999 bytes
    for message_id in ids:
        world.clock.advance(1)
        ann.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    after = [ann.send("chat_message", {"roomId": "lobby", "message": f"{n:03d}" + "é" * 1998})["data"]["messageId"] for n in range(30)]
    frame = world.connect("bob").send("join_room", {"roomId": "lobby", "since": since, "limit": 100})
    data = frame["data"]
    assert wire_size(frame) <= MAX_FRAME_BYTES
    kept = [m["messageId"] for m in data["changed"]]
    assert 10 < len(kept) < 30 and kept == ids[::-1][:len(kept)] and data["moreChanged"] is True
    assert wire_size(data["changed"]) <= CHANGED_FRAME_SHARE + 2  # its brackets
    got = [m["messageId"] for m in data["messages"]]
    assert 5 < len(got) < 30 and got == after[:len(got)] and data["hasMore"] is True
    assert wire_size(frame) > MAX_FRAME_BYTES - 5000, "the page filled what the changes left"
