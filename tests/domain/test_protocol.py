"""Every row of PROTOCOL.md's tables, asserted on what each connection actually received."""

from __future__ import annotations

import re


from parley.core.ids import is_ulid
from parley_testing.room_rules import state

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def joined(world, room="lobby", *users):
    clients = []
    for user in users:
        client = world.connect(user, user.title())
        client.send("join_room", {"roomId": room})
        clients.append(client)
    for client in clients:
        client.take()
    return clients


def test_message_echoes_with_status_and_timestamp(world):
    alice = world.connect("alice")
    reply = alice.send("message", {"message": {"nested": [1, 2, 3]}})
    assert reply["type"] == "message_response"
    assert reply["data"]["status"] == "received"
    assert reply["data"]["message"] == {"nested": [1, 2, 3]}
    assert ISO.match(reply["data"]["timestamp"])
    assert alice.take() == [reply]


def test_ping_gets_pong_with_timestamp(world):
    alice = world.connect("alice")
    alice.send("ping")  # data omitted means {}
    frames = alice.take()
    assert [f["type"] for f in frames] == ["pong"]
    assert ISO.match(frames[0]["data"]["timestamp"])


def test_join_room_sends_participants_then_history_and_announces_once(world):
    alice = world.connect("alice", "Alice")
    alice.send("join_room", {"roomId": "lobby"})
    frames = alice.take()
    assert [f["type"] for f in frames] == ["participants_list", "chat_history"]
    assert frames[0]["data"] == {"roomId": "lobby", "participants": [{"userId": "alice", "name": "Alice"}], "count": 1}
    assert frames[1]["data"] == {"roomId": "lobby", "messages": [], "hasMore": False, "unreadCount": 0, "unreadCapped": False}

    bob = world.connect("bob", "Bob")
    bob.send("join_room", {"roomId": "lobby"})
    bob_frames = bob.take()
    assert bob_frames[0]["data"]["participants"] == [
        {"userId": "alice", "name": "Alice"},
        {"userId": "bob", "name": "Bob"},
    ]
    announced = alice.take()
    assert [f["type"] for f in announced] == ["user_joined"]
    assert announced[0]["data"]["userId"] == "bob" and announced[0]["data"]["name"] == "Bob"
    assert announced[0]["data"]["roomId"] == "lobby" and ISO.match(announced[0]["data"]["timestamp"])

    # Joining again is harmless and announces nothing.
    bob.send("join_room", {"roomId": "lobby"})
    assert bob.types() == ["participants_list", "chat_history"]
    assert alice.take() == []
    # A second connection of the same user announces nothing either, and lists bob once.
    bob_phone = world.connect("bob", "Bob")
    bob_phone.send("join_room", {"roomId": "lobby"})
    assert alice.take() == []
    assert [p["userId"] for p in bob_phone.take()[0]["data"]["participants"]] == ["alice", "bob"]


def test_chat_message_reaches_every_connection_then_delivered_count(world):
    alice, bob, carol = joined(world, "lobby", "alice", "bob", "carol")
    outsider = world.connect("dave")
    reply = alice.send("chat_message", {"roomId": "lobby", "message": "hello", "clientMessageId": "c-1"})
    assert reply["type"] == "chat_update"
    alice_frames = alice.take()
    assert [f["type"] for f in alice_frames] == ["message_received", "chat_update"]
    message = alice_frames[0]["data"]
    assert is_ulid(message["messageId"]) and ISO.match(message["timestamp"])
    assert message == {
        "messageId": message["messageId"],
        "roomId": "lobby",
        "userId": "alice",
        "name": "Alice",
        "message": "hello",
        "timestamp": message["timestamp"],
        "version": 1,
        "clientMessageId": "c-1",
    }
    assert alice_frames[1]["data"] == {"roomId": "lobby", "messageId": message["messageId"], "status": "delivered", "deliveredTo": 2}
    assert bob.take() == [alice_frames[0]]
    assert carol.take() == [alice_frames[0]]
    assert outsider.take() == []


def test_chat_message_without_client_message_id_omits_it(world):
    alice, bob = joined(world, "lobby", "alice", "bob")
    alice.send("chat_message", {"roomId": "lobby", "message": "hi"})
    assert "clientMessageId" not in bob.take()[0]["data"]


def test_typing_goes_to_other_members_only(world):
    alice, bob = joined(world, "lobby", "alice", "bob")
    assert alice.send("typing", {"roomId": "lobby", "isTyping": True}) is None
    assert alice.take() == []
    assert bob.take() == [{"type": "typing_update", "data": {"roomId": "lobby", "userId": "alice", "isTyping": True}}]


def test_mark_read_moves_forward_only_and_tells_others(world):
    alice, bob = joined(world, "lobby", "alice", "bob")
    alice.send("chat_message", {"roomId": "lobby", "message": "one"})
    alice.send("chat_message", {"roomId": "lobby", "message": "two"})
    first, second = [f["data"]["messageId"] for f in bob.take()]
    alice.take()
    assert bob.send("mark_read", {"roomId": "lobby", "messageId": second}) is None
    assert alice.take() == [
        {"type": "chat_update", "data": {"roomId": "lobby", "messageId": second, "status": "read", "userId": "bob"}}
    ]
    assert bob.take() == []
    bob.send("mark_read", {"roomId": "lobby", "messageId": first})  # backwards: nothing moves, nothing sent
    assert alice.take() == []
    cursor = [i for i in world.items("MembershipsTable") if i["memberKey"]["S"] == "r#bob"]
    assert cursor[0]["messageId"]["S"] == second


def test_leave_room_announces_when_last_connection_leaves(world):
    alice, bob = joined(world, "lobby", "alice", "bob")
    bob_phone = world.connect("bob")
    bob_phone.send("join_room", {"roomId": "lobby"})
    world.collect()
    for c in (alice, bob, bob_phone):
        c.take()
    assert bob.send("leave_room", {"roomId": "lobby"}) is None
    assert alice.take() == []  # bob is still there on his phone
    bob_phone.send("leave_room", {"roomId": "lobby"})
    left = alice.take()
    assert [f["type"] for f in left] == ["user_left"]
    assert left[0]["data"]["userId"] == "bob" and left[0]["data"]["roomId"] == "lobby"
    # Leaving a room one is not in does nothing but count against the joins allowance (its
    # conditional delete is a write all the same).
    before = state(world)
    assert bob.send("leave_room", {"roomId": "lobby"}) is None
    assert state(world) == before and alice.take() == [] and bob.take() == []
    # After leaving, members-only types are refused.
    bob.send("chat_message", {"roomId": "lobby", "message": "still here?"})
    assert bob.take()[0]["data"]["code"] == "not_a_member"


def test_get_history_pages_with_before(world):
    (alice,) = joined(world, "lobby", "alice")
    ids = []
    for n in range(7):
        alice.send("chat_message", {"roomId": "lobby", "message": f"m{n}"})
        ids.append(alice.take()[0]["data"]["messageId"])
    newest = alice.send("get_history", {"roomId": "lobby", "limit": 3})["data"]
    assert [m["messageId"] for m in newest["messages"]] == ids[4:]
    assert newest["hasMore"] is True
    older = alice.send("get_history", {"roomId": "lobby", "before": ids[4], "limit": 3})["data"]
    assert [m["messageId"] for m in older["messages"]] == ids[1:4]
    assert older["hasMore"] is True
    oldest = alice.send("get_history", {"roomId": "lobby", "before": ids[1], "limit": 3})["data"]
    assert [m["message"] for m in oldest["messages"]] == ["m0"]
    assert oldest["hasMore"] is False
    default_page = alice.send("get_history", {"roomId": "lobby"})["data"]
    assert len(default_page["messages"]) == 7 and default_page["hasMore"] is False


def away_while_five_are_sent(world):
    """Bob's connection drops while alice sends m0..m4 to the lobby: their ids, and bob's new connection (in no room)."""
    alice, bob = joined(world, "lobby", "alice", "bob")
    ids = []
    for n in range(5):
        alice.send("chat_message", {"roomId": "lobby", "message": f"m{n}"})
        ids.append(alice.take()[0]["data"]["messageId"])
    world.disconnect(bob)
    return ids, world.connect("bob")


def test_join_with_since_returns_what_was_missed(world):
    ids, bob_again = away_while_five_are_sent(world)
    bob_again.send("join_room", {"roomId": "lobby", "since": ids[1], "limit": 2})
    frames = bob_again.take()
    history = frames[1]["data"]
    assert [m["messageId"] for m in history["messages"]] == ids[2:4]
    assert history["hasMore"] is True
    bob_again.send("join_room", {"roomId": "lobby", "since": ids[3]})
    rest = bob_again.take()[1]["data"]
    assert [m["messageId"] for m in rest["messages"]] == ids[4:] and rest["hasMore"] is False
    # Without since: the newest `limit`, oldest first.
    newest = world.connect("carol")
    newest.send("join_room", {"roomId": "lobby", "limit": 2})
    assert [m["messageId"] for m in newest.take()[1]["data"]["messages"]] == ids[3:]


def test_a_rejoin_pages_on_with_get_history_since_and_each_page_says_which_since_it_answers(world):
    ids, back = away_while_five_are_sent(world)
    back.send("join_room", {"roomId": "lobby", "since": ids[0], "limit": 2})
    first = back.take()[1]["data"]
    assert [m["messageId"] for m in first["messages"]] == ids[1:3] and first["hasMore"] is True
    assert first["since"] == ids[0] and first["unreadCount"] == 5  # a join's answer still counts unread
    page = back.send("get_history", {"roomId": "lobby", "since": ids[2], "limit": 2})
    assert page["type"] == "chat_history" and back.take() == [page]  # the page only: no participants, no join
    assert [m["messageId"] for m in page["data"]["messages"]] == ids[3:5]
    assert page["data"]["hasMore"] is False and page["data"]["since"] == ids[2] and "unreadCount" not in page["data"]
    older = back.send("get_history", {"roomId": "lobby", "before": ids[1]})["data"]  # an older page says no since
    assert [m["messageId"] for m in older["messages"]] == ids[:1] and "since" not in older


def test_get_history_with_both_before_and_since_is_refused_and_changes_nothing(world):
    (alice,) = joined(world, "lobby", "alice")
    alice.send("chat_message", {"roomId": "lobby", "message": "m"})
    mid = alice.take()[0]["data"]["messageId"]
    before = world.items("MembershipsTable")
    error = alice.send("get_history", {"roomId": "lobby", "before": mid, "since": mid})
    assert error["type"] == "error" and error["data"]["code"] == "validation_error"
    assert "before" in error["data"]["message"] and "since" in error["data"]["message"]
    assert [d["field"] for d in error["data"]["details"]] == ["since"]
    assert world.items("MembershipsTable") == before and alice.take() == [error]  # one error frame, nothing else
    outsider = world.connect("carol")
    assert outsider.send("get_history", {"roomId": "lobby", "since": mid})["data"]["code"] == "not_a_member"


def test_spoofed_user_id_in_data_is_ignored(world):
    alice, bob = joined(world, "lobby", "alice", "bob")
    alice.send("chat_message", {"roomId": "lobby", "message": "hi", "userId": "bob", "name": "Bob"})
    received = bob.take()[0]["data"]
    assert received["userId"] == "alice" and received["name"] == "Alice"
    alice.send("typing", {"roomId": "lobby", "isTyping": True, "userId": "bob"})
    assert bob.take()[0]["data"]["userId"] == "alice"
    alice.send("mark_read", {"roomId": "lobby", "messageId": received["messageId"], "userId": "bob"})
    assert bob.take()[0]["data"]["userId"] == "alice"


def test_a_retry_after_an_edit_or_a_deletion_tells_the_room_the_message_as_it_stands(world):
    """A duplicate's echo is the history's copy now: a member who lacks the message must get neither the
    first text of an edited one nor the text of a deleted one."""
    alice, bob = joined(world, "lobby", "alice", "bob")
    sent = alice.send("chat_message", {"roomId": "lobby", "message": "frist", "clientMessageId": "c-1"})["data"]["messageId"]
    alice.send("edit_message", {"roomId": "lobby", "messageId": sent, "message": "first"})
    alice.take(), bob.take()
    echo = alice.send("chat_message", {"roomId": "lobby", "message": "frist", "clientMessageId": "c-1"})
    assert echo["type"] == "message_received" and echo["data"]["messageId"] == sent
    assert (echo["data"]["message"], echo["data"]["version"]) == ("first", 2)
    assert bob.take() == [echo]
    alice.send("delete_message", {"roomId": "lobby", "messageId": sent})
    alice.take(), bob.take()
    tombstone = alice.send("chat_message", {"roomId": "lobby", "message": "frist", "clientMessageId": "c-1"})["data"]
    assert tombstone["deleted"] is True and "message" not in tombstone and tombstone["version"] == 3
    assert tombstone["clientMessageId"] == "c-1"  # the sender's client acknowledges its retry by it
    assert len(world.items("MessagesTable")) == 1


def test_retry_with_same_client_message_id_stores_one_message(world):
    alice, bob = joined(world, "lobby", "alice", "bob")
    first = alice.send("chat_message", {"roomId": "lobby", "message": "once", "clientMessageId": "retry-1"})
    original = alice.take()[0]
    assert bob.take() == [original]
    again = alice.send("chat_message", {"roomId": "lobby", "message": "once", "clientMessageId": "retry-1"})
    assert again == original  # the original message_received as the route response
    assert alice.take() == [original]
    assert bob.take() == [original]  # the room is told again (the first attempt may have told nobody): the same messageId
    assert len(world.items("MessagesTable")) == 1
    assert first["data"]["messageId"] == original["data"]["messageId"]
    # The same clientMessageId from another user, or in another room, is a different message.
    bob.send("chat_message", {"roomId": "lobby", "message": "mine", "clientMessageId": "retry-1"})
    assert len(world.items("MessagesTable")) == 2


def test_disconnect_removes_memberships_and_announces(world):
    alice, bob = joined(world, "lobby", "alice", "bob")
    bob.send("join_room", {"roomId": "other"})
    alice.send("join_room", {"roomId": "other"})
    world.collect()
    alice.take(), bob.take()
    world.disconnect(bob)
    left = alice.take()
    assert sorted(f["data"]["roomId"] for f in left if f["type"] == "user_left") == ["lobby", "other"]
    memberships = [i for i in world.items("MembershipsTable") if i["memberKey"]["S"].startswith("c#")]
    assert {i["connectionId"]["S"] for i in memberships} == {alice.connection_id}


def test_connect_stores_nothing_and_the_tokens_name_comes_with_every_frame(world):
    before = world.snapshot()
    alice, bob = world.connect("alice", "Alice B."), world.connect("bob")
    assert world.snapshot() == before  # nothing reads a record of open connections, so none is written
    for client in (alice, bob):
        client.send("join_room", {"roomId": "lobby"})
    world.collect()
    bob.take()
    alice.send("chat_message", {"roomId": "lobby", "message": "hi"})
    (received,) = [f["data"] for f in bob.take() if f["type"] == "message_received"]
    assert (received["userId"], received["name"]) == ("alice", "Alice B.")


def test_half_the_room_gone_every_live_one_still_gets_it(world):
    clients = joined(world, "big", *[f"user{n}" for n in range(20)])
    gone = clients[1::2]
    live = clients[0::2]
    world.gone.update(c.connection_id for c in gone)
    reply = live[0].send("chat_message", {"roomId": "big", "message": "anyone?"})
    assert reply["data"]["deliveredTo"] == len(live) - 1
    for client in live:
        frames = client.take()
        assert [f for f in frames if f["type"] == "message_received"][0]["data"]["message"] == "anyone?"
        departed = {f["data"]["userId"] for f in frames if f["type"] == "user_left"}
        assert departed == {c.user_id for c in gone}
    members = {i["connectionId"]["S"] for i in world.items("MembershipsTable") if i["memberKey"]["S"].startswith("c#")}
    assert members == {c.connection_id for c in live}
