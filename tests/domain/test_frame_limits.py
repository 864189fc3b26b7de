"""Every frame stays inside API Gateway's limits, counted in UTF-8 bytes of the JSON: 128 KB for
what the server sends, 32 KB for what a client sends."""

from __future__ import annotations

import json

from parley.core.protocol import MAX_CLIENT_FRAME_BYTES, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES_LIMIT


def wire_size(frame) -> int:
    return len(json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def fill_room(world, count: int, text: str):
    alice = world.connect("alice")
    alice.send("join_room", {"roomId": "big"})
    ids = []
    for n in range(count):
        reply = alice.send("chat_message", {"roomId": "big", "message": f"{n:03d}{text}"})
        ids.append(reply["data"]["messageId"])
    alice.take()
    return alice, ids


def test_a_history_page_too_big_for_one_frame_keeps_the_newest_and_says_has_more(world):
    world.use_limits(chat=1000, signals=1000, window_seconds=10)
    alice, ids = fill_room(world, 50, "é" * 1998)  # 50 messages of 3,999 bytes: about 205 KB in all
    page = alice.send("get_history", {"roomId": "big", "limit": 50})
    assert wire_size(page) <= MAX_FRAME_BYTES
    got = [m["messageId"] for m in page["data"]["messages"]]
    assert 25 < len(got) < 50 and got == ids[-len(got):] and page["data"]["hasMore"] is True
    # Paging on with `before` gets the rest, each page inside the limit.
    older = alice.send("get_history", {"roomId": "big", "before": got[0], "limit": 50})
    assert wire_size(older) <= MAX_FRAME_BYTES
    assert [m["messageId"] for m in older["data"]["messages"]] == ids[: 50 - len(got)] and older["data"]["hasMore"] is False


def test_a_since_page_too_big_keeps_the_oldest_so_the_client_continues_from_its_last(world):
    world.use_limits(chat=1000, signals=1000, window_seconds=10)
    alice, ids = fill_room(world, 50, "x" * 3996)
    bob = world.connect("bob")
    bob.send("join_room", {"roomId": "big", "since": ids[0], "limit": 100})
    history = bob.take()[1]
    assert wire_size(history) <= MAX_FRAME_BYTES
    got = [m["messageId"] for m in history["data"]["messages"]]
    assert 25 < len(got) < 49 and got == ids[1 : 1 + len(got)] and history["data"]["hasMore"] is True
    bob.send("join_room", {"roomId": "big", "since": got[-1], "limit": 100})
    rest = bob.take()[1]["data"]
    assert [m["messageId"] for m in rest["messages"]] == ids[1 + len(got) :] and rest["hasMore"] is False


def test_a_page_that_fits_is_unchanged(world):
    alice, ids = fill_room(world, 5, "short")
    page = alice.send("get_history", {"roomId": "big", "limit": 3})["data"]
    assert [m["messageId"] for m in page["messages"]] == ids[2:] and page["hasMore"] is True


def test_the_message_limit_counts_utf8_bytes_as_sent(world):
    alice = world.connect("alice")
    alice.send("join_room", {"roomId": "r"})
    alice.take()
    accepted = {"x" * 4000: True, "é" * 2000: True, "é" * 2001: False, "€" * 1334: False, "\x01" * 666: True, "\x01" * 667: False}
    for text, ok in accepted.items():
        reply = alice.send("chat_message", {"roomId": "r", "message": text})
        assert (reply["type"] == "chat_update") is ok, (len(text), reply)
        if not ok:
            assert reply["data"]["code"] == "validation_error" and "bytes" in reply["data"]["details"][0]["message"]
        alice.take()


def test_at_the_largest_setting_the_worst_message_still_fits_a_client_frame(world):
    world.max_message_length = MAX_MESSAGE_BYTES_LIMIT
    alice = world.connect("alice")
    room = "r" * 64
    alice.send("join_room", {"roomId": room})
    alice.take()
    for n, text in enumerate(("\x01" * (MAX_MESSAGE_BYTES_LIMIT // 6), "€" * (MAX_MESSAGE_BYTES_LIMIT // 3), "y" * MAX_MESSAGE_BYTES_LIMIT)):
        frame = {"type": "chat_message", "data": {"roomId": room, "message": text, "clientMessageId": "\x02" * 63 + str(n)}}
        raw = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))  # as JSON.stringify sends it
        assert len(raw.encode("utf-8")) <= MAX_CLIENT_FRAME_BYTES
        assert alice.send(raw=raw)["type"] == "chat_update"
        for received in alice.take():
            assert wire_size(received) <= MAX_FRAME_BYTES
