"""Issue 13's rules as tests: room access from the token, direct messages, edit/delete, reactions,
unread counts and get_rooms. Every refusal is one error frame, reaches nobody else and changes no
message, membership or cursor.

Written against `ChatWorld` and collected by two suites, each with its own `world` fixture:
tests/domain/test_rooms.py (`ChatService` with the in-memory store) and
tests/handlers/test_rooms_access.py (the real Lambda functions on moto)."""

from __future__ import annotations

import pytest

from parley.core.access import RoomAccessMode
from parley.core.ids import new_ulid, ulid_at, ulid_time_ms
from parley.core.model import ChatMessage, Member
from parley_testing.chat_world import ChatWorld, MemoryChatWorld

ULID_NOWHERE = "01JCGW5Z8Q6V3R2N1M0K9J8H7G"


def state(world):
    """The tables without rate counters: a refused change may still count against the allowance."""
    snapshot = world.snapshot()
    snapshot["IdempotencyTable"] = [i for i in snapshot["IdempotencyTable"] if not i["key"]["S"].startswith("rate#")]
    return snapshot


def refused(world, client, type_name, data, code, *, others=()):
    """Send a frame that must be refused: one error frame back, no table change, nothing to others."""
    before = state(world)
    client.send(type_name, data)
    frames = client.take()
    assert len(frames) == 1 and frames[0]["type"] == "error", frames
    assert frames[0]["data"]["code"] == code, frames[0]
    assert state(world) == before, "a refused frame changed the tables"
    for other in others:
        assert other.take() == [], "a refused frame reached another connection"
    return frames[0]["data"]


def joined(world, user, room, rooms=None):
    client = world.connect(user, rooms=rooms)
    client.send("join_room", {"roomId": room})
    client.take()
    return client


def say(client, room, text):
    reply = client.send("chat_message", {"roomId": room, "message": text})
    assert reply["type"] == "chat_update", reply
    return reply["data"]["messageId"]


def drain(*clients):
    for client in clients:
        client.take()


# ---- access from the claim ---------------------------------------------------------------------
def test_forbidden_names_the_room_and_the_action(world):
    reader = world.connect("rita", rooms={"case-*": ["read"]})
    data = refused(world, reader, "join_room", {"roomId": "lobby"}, "forbidden")
    assert data["roomId"] == "lobby" and data["action"] == "read" and data["requestType"] == "join_room"
    assert "token" in data["message"]


def test_a_read_only_member_hears_everything_and_may_say_nothing(world):
    writer = joined(world, "wendy", "case-1", rooms={"case-*": ["read", "write"]})
    reader = joined(world, "rita", "case-1", rooms={"case-*": ["read"]})
    drain(writer)
    message_id = say(writer, "case-1", "hello")
    assert [f["type"] for f in reader.take()] == ["message_received"]
    drain(writer)
    for type_name, data in [
        ("chat_message", {"roomId": "case-1", "message": "hi"}),
        ("typing", {"roomId": "case-1", "isTyping": True}),
        ("mark_read", {"roomId": "case-1", "messageId": message_id}),
        ("react", {"roomId": "case-1", "messageId": message_id, "emoji": "👍"}),
        ("edit_message", {"roomId": "case-1", "messageId": message_id, "message": "x"}),
        ("delete_message", {"roomId": "case-1", "messageId": message_id}),
    ]:
        data = refused(world, reader, type_name, data, "forbidden", others=[writer])
        assert data["action"] == "write", type_name
    assert reader.send("get_history", {"roomId": "case-1"})["type"] == "chat_history"
    writer.send("typing", {"roomId": "case-1", "isTyping": True})
    assert [f["type"] for f in reader.take()] == ["chat_history", "typing_update"]


def test_leaving_needs_no_permission(world):
    member = joined(world, "ann", "lobby")
    other = joined(world, "bob", "lobby")
    drain(member)
    stranger = world.connect("cy", rooms={})
    assert stranger.send("leave_room", {"roomId": "lobby"}) is None  # nothing to leave, nothing refused
    assert stranger.take() == [] and other.take() == []
    member.send("leave_room", {"roomId": "lobby"})
    assert [f["type"] for f in other.take()] == ["user_left"]


def test_token_mode_refuses_a_token_without_the_claim_but_not_its_dms(world):
    world.use_room_access(RoomAccessMode.TOKEN)
    ann = world.connect("ann")
    refused(world, ann, "join_room", {"roomId": "lobby"}, "forbidden")
    assert ann.send("join_room", {"roomId": "dm:ann:bob"})["type"] == "chat_history"
    granted = world.connect("bob", rooms={"lobby": ["read"]})
    assert granted.send("join_room", {"roomId": "lobby"})["type"] == "chat_history"


def test_a_dm_belongs_to_its_two_users_whatever_the_claim(world):
    ann = joined(world, "ann", "dm:ann:bob", rooms={})
    bob = joined(world, "bob", "dm:ann:bob", rooms={})
    drain(ann)
    admin = world.connect("cy", rooms={"*": ["read", "write", "moderate"], "dm:*": ["read"]})
    refused(world, admin, "join_room", {"roomId": "dm:ann:bob"}, "forbidden", others=[ann, bob])
    refused(world, admin, "chat_message", {"roomId": "dm:ann:bob", "message": "hi"}, "forbidden", others=[ann, bob])
    say(ann, "dm:ann:bob", "just us")
    assert [f["type"] for f in bob.take()] == ["message_received"]


@pytest.mark.parametrize("room", ["dm:bob:ann", "dm:ann", "dm:ann:ann", "dm:a:b:c", "dm::bob"])
def test_any_other_dm_shape_is_a_validation_error(world, room):
    ann = world.connect("ann")
    data = refused(world, ann, "join_room", {"roomId": room}, "validation_error")
    assert data["details"][0]["field"] == "roomId"


def test_no_frame_of_a_room_reaches_a_membership_without_read(world):
    """Join never admits a connection without `read`; a row that says otherwise (written by an
    older deployment, or by hand) still gets nothing: the fan-out reads the actions it stores."""
    ann = joined(world, "ann", "lobby")
    ghost = world.connect("ghost")
    add_member_directly(world, Member("lobby", ghost.connection_id, "ghost", "ghost", 1, actions="w"))
    message_id = say(ann, "lobby", "secret")
    ann.send("typing", {"roomId": "lobby", "isTyping": True})
    ann.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    ann.send("edit_message", {"roomId": "lobby", "messageId": message_id, "message": "still secret"})
    joined(world, "bob", "lobby")
    assert ghost.take() == []
    assert any(f["type"] == "message_received" for f in ann.take())


# ---- edit and delete ---------------------------------------------------------------------------
@pytest.fixture
def chat(world):
    ann = joined(world, "ann", "lobby")
    bob = joined(world, "bob", "lobby")
    mod = joined(world, "mo", "lobby", rooms={"*": ["read", "write", "moderate"]})
    message_id = say(ann, "lobby", "helo")
    drain(ann, bob, mod)
    return ann, bob, mod, message_id


def test_the_author_edits_and_everyone_hears_it_and_history_shows_it(world, chat):
    ann, bob, mod, message_id = chat
    assert ann.send("edit_message", {"roomId": "lobby", "messageId": message_id, "message": "hello"}) is None
    for client in (ann, bob, mod):
        [update] = client.take()
        assert update["type"] == "message_updated"
        assert update["data"]["message"] == "hello" and update["data"]["messageId"] == message_id
    history = bob.send("get_history", {"roomId": "lobby"})["data"]["messages"]
    assert history[0]["message"] == "hello" and history[0]["editedAt"] == update["data"]["editedAt"]


def test_an_edit_retry_changes_nothing_and_tells_the_room_again(world, chat):
    """The first attempt may have died after its write and before its fan-out: the retry tells everyone."""
    ann, bob, mod, message_id = chat
    ann.send("edit_message", {"roomId": "lobby", "messageId": message_id, "message": "hello"})
    first = ann.take()[0]
    drain(bob, mod)
    before = state(world)
    again = ann.send("edit_message", {"roomId": "lobby", "messageId": message_id, "message": "hello"})
    assert again is None and ann.take() == [first]
    assert bob.take() == [first] and state(world) == before


def test_editing_someone_elses_message_is_forbidden(world, chat):
    ann, bob, mod, message_id = chat
    data = refused(world, bob, "edit_message", {"roomId": "lobby", "messageId": message_id, "message": "mine now"},
                   "forbidden", others=[ann, mod])
    assert data["action"] == "write" and "author" in data["message"]
    refused(world, mod, "edit_message", {"roomId": "lobby", "messageId": message_id, "message": "moderated"}, "forbidden")


def test_edits_keep_the_length_rules(world, chat):
    ann, bob, mod, message_id = chat
    for text in ["", "   ", "x" * 4001]:
        refused(world, ann, "edit_message", {"roomId": "lobby", "messageId": message_id, "message": text},
                "validation_error", others=[bob])


def test_the_author_deletes_and_history_keeps_a_tombstone(world, chat):
    ann, bob, mod, message_id = chat
    ann.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    drain(ann, bob, mod)
    assert ann.send("delete_message", {"roomId": "lobby", "messageId": message_id}) is None
    for client in (ann, bob, mod):
        assert client.take() == [{"type": "message_deleted",
                                  "data": {"roomId": "lobby", "messageId": message_id, "deletedBy": "ann", "version": 3}}]
    [tombstone] = bob.send("get_history", {"roomId": "lobby"})["data"]["messages"]
    assert tombstone["deleted"] is True and tombstone["deletedBy"] == "ann" and tombstone["userId"] == "ann"
    assert tombstone["version"] == 3  # stored, reacted to, deleted
    assert "message" not in tombstone and "reactions" not in tombstone
    stored = [i for i in world.items("MessagesTable") if i["messageId"]["S"] == message_id]
    assert "message" not in stored[0]  # the text is gone from the table, not just hidden


def test_deleting_twice_changes_nothing_and_tells_the_room_again(world, chat):
    """A retry: its first attempt may have died after its write and before its fan-out. Editing or
    reacting to the tombstone is refused."""
    ann, bob, mod, message_id = chat
    ann.send("delete_message", {"roomId": "lobby", "messageId": message_id})
    [first] = bob.take()
    drain(ann, mod)
    before = state(world)
    assert ann.send("delete_message", {"roomId": "lobby", "messageId": message_id}) is None
    assert bob.take() == [first] and first["type"] == "message_deleted" and state(world) == before
    drain(ann, mod)
    refused(world, bob, "delete_message", {"roomId": "lobby", "messageId": message_id}, "validation_error", others=[ann, mod])
    refused(world, ann, "edit_message", {"roomId": "lobby", "messageId": message_id, "message": "back"}, "validation_error")
    refused(world, ann, "react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"}, "validation_error")


def test_deleting_someone_elses_message_needs_moderate(world, chat):
    ann, bob, mod, message_id = chat
    data = refused(world, bob, "delete_message", {"roomId": "lobby", "messageId": message_id}, "forbidden", others=[ann, mod])
    assert data["action"] == "moderate"
    assert mod.send("delete_message", {"roomId": "lobby", "messageId": message_id}) is None
    assert ann.take()[0]["data"]["deletedBy"] == "mo"


def test_changes_to_a_message_of_another_room_or_none_are_refused(world, chat):
    ann, bob, mod, message_id = chat
    joined(world, "ann", "elsewhere")
    other_room = world.connect("ann")
    other_room.send("join_room", {"roomId": "elsewhere"})
    other_room.take()
    for type_name, extra in [("react", {"emoji": "👍"}), ("edit_message", {"message": "x"}), ("delete_message", {})]:
        for room, mid in [("elsewhere", message_id), ("lobby", ULID_NOWHERE)]:
            client = other_room if room == "elsewhere" else ann
            data = refused(world, client, type_name, {"roomId": room, "messageId": mid, **extra}, "validation_error", others=[bob])
            assert data["details"] == [{"field": "messageId", "message": "no such message in this room"}]


# ---- versions ----------------------------------------------------------------------------------
def test_every_change_moves_the_version_once_and_a_retry_tells_the_current_one(world, chat):
    """A client keeps the copy of a message with the higher version (PROTOCOL "Versions"): each
    change that writes the message moves it by one, a retry that changes nothing leaves it."""
    ann, bob, mod, message_id = chat
    [stored] = ann.send("get_history", {"roomId": "lobby"})["data"]["messages"]
    assert stored["version"] == 1

    def version_heard(sender, type_name, data):
        before = state(world)
        sender.send(type_name, {"roomId": "lobby", "messageId": message_id, **data})
        [heard] = bob.take()
        drain(ann, mod)
        return heard["data"]["version"], state(world) != before

    steps = [("edit_message", {"message": "hello"}, ann), ("react", {"emoji": "👍"}, bob),
             ("react", {"emoji": "👍", "remove": True}, bob), ("delete_message", {}, mod)]
    for number, (type_name, data, sender) in enumerate(steps, start=2):
        assert version_heard(sender, type_name, data) == (number, True), type_name
        assert version_heard(sender, type_name, data) == (number, False), f"{type_name} retried"
    [tombstone] = bob.send("get_history", {"roomId": "lobby"})["data"]["messages"]
    assert tombstone["version"] == 5 and tombstone["deleted"] is True
    assert ann.send("get_rooms")["data"]["rooms"][0]["lastMessage"]["version"] == 5


def test_a_message_stored_before_versions_counts_from_0(world):
    """Items written before versions existed have none: they read as 0, and their first change makes 1."""
    ann = joined(world, "ann", "old")
    [message_id] = put_messages(world, "old", 1)
    drop_version(world, "old", message_id)
    assert [i for i in world.items("MessagesTable") if i["messageId"]["S"] == message_id][0].get("version") is None
    [old] = ann.send("get_history", {"roomId": "old"})["data"]["messages"]
    assert old["version"] == 0
    drain(ann)
    ann.send("react", {"roomId": "old", "messageId": message_id, "emoji": "👍"})
    [update] = ann.take()
    assert update["type"] == "reaction_update" and update["data"]["version"] == 1


# ---- reactions ---------------------------------------------------------------------------------
def test_reactions_count_once_per_user_and_reach_the_room(world, chat):
    ann, bob, mod, message_id = chat
    bob.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    [update] = ann.take()
    assert update == {"type": "reaction_update", "data": {
        "roomId": "lobby", "messageId": message_id, "userId": "bob", "emoji": "👍", "action": "added", "counts": {"👍": 1},
        "version": 2}}
    mod.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    assert ann.take()[0]["data"]["counts"] == {"👍": 2}
    drain(bob, mod)
    before = state(world)
    retry = bob.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍"})
    # a retry changes nothing and tells the room again (its first attempt may have told nobody)
    assert retry is None and state(world) == before
    assert [f["data"]["counts"] for f in ann.take()] == [{"👍": 2}] and bob.take()[0]["data"]["counts"] == {"👍": 2}
    bob.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": "👍", "remove": True})
    assert ann.take()[0]["data"] == {"roomId": "lobby", "messageId": message_id, "userId": "bob", "emoji": "👍",
                                     "action": "removed", "counts": {"👍": 1}, "version": 4}
    [message] = ann.send("get_history", {"roomId": "lobby"})["data"]["messages"]
    assert message["reactions"] == {"👍": 1}


def test_bad_emoji_and_a_21st_emoji_are_refused(world, chat):
    ann, bob, mod, message_id = chat
    for emoji in ["👍" * 1024, "lol", "👍 👍", "", 5]:
        data = refused(world, ann, "react", {"roomId": "lobby", "messageId": message_id, "emoji": emoji}, "validation_error",
                       others=[bob])
        assert data["details"][0]["field"] == "emoji"
    for n in range(20):
        ann.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": chr(0x1F600 + n)})
    drain(ann, bob, mod)
    refused(world, ann, "react", {"roomId": "lobby", "messageId": message_id, "emoji": "🎉"}, "validation_error", others=[bob])
    # An emoji already on the message can still gain users.
    assert bob.send("react", {"roomId": "lobby", "messageId": message_id, "emoji": chr(0x1F600)}) is None
    assert bob.take()[0]["data"]["counts"][chr(0x1F600)] == 2


# ---- unread counts and get_rooms --------------------------------------------------------------
def store_of(world: ChatWorld):
    """The world's store: the in-memory one, or the DynamoDB one the handlers use (on moto)."""
    if isinstance(world, MemoryChatWorld):
        return world.store
    from parley.aws.lambda_routes import _store

    return _store


def add_member_directly(world: ChatWorld, member: Member) -> None:
    store_of(world).add_member(member)


def put_messages(world: ChatWorld, room: str, count: int, start_ms: int = 1_700_000_000_000) -> list[str]:
    """Store messages straight through the store: the rate limit is not what these tests are about."""
    ids = []
    for n in range(count):
        message = ChatMessage(room, ulid_at(start_ms + n), "zed", "Zed", f"m{n}", "2023-11-14T22:13:20.000Z")
        store_of(world).put_message(message)
        ids.append(message.message_id)
    return sorted(ids)


def drop_version(world: ChatWorld, room: str, message_id: str) -> None:
    """Make a stored message look like one written before versions existed (no `version` attribute)."""
    if isinstance(world, MemoryChatWorld):
        world.store.messages[(room, message_id)].pop("version")
        return
    from parley.aws.tables import StoredMessage

    StoredMessage(room, message_id).update(actions=[StoredMessage.version.remove()])


def test_join_counts_unread_exactly_up_to_100_then_caps(world):
    ids = put_messages(world, "busy", 120)
    ann = world.connect("ann")
    history = ann.send("join_room", {"roomId": "busy", "limit": 10})["data"]
    assert (history["unreadCount"], history["unreadCapped"]) == (100, True)
    ann.send("mark_read", {"roomId": "busy", "messageId": ids[30]})
    again = world.connect("ann").send("join_room", {"roomId": "busy", "limit": 10})["data"]
    assert (again["unreadCount"], again["unreadCapped"]) == (89, False)
    ann.send("mark_read", {"roomId": "busy", "messageId": ids[115]})
    inside = world.connect("ann").send("join_room", {"roomId": "busy", "limit": 10})["data"]
    assert (inside["unreadCount"], inside["unreadCapped"]) == (4, False)


def test_get_rooms_lists_joined_and_read_rooms_newest_first_with_unread_and_pages(world):
    ann = world.connect("ann")
    bob = world.connect("bob")
    for room in ["alpha", "beta", "gamma"]:
        ann.send("join_room", {"roomId": room})
        bob.send("join_room", {"roomId": room})
    say(bob, "beta", "first")
    say(bob, "alpha", "x" * 300)
    last = say(bob, "alpha", "newest")
    ann.send("mark_read", {"roomId": "alpha", "messageId": last})
    drain(ann, bob)
    first = ann.send("get_rooms", {"limit": 2})["data"]
    assert [r["roomId"] for r in first["rooms"]] == ["alpha", "beta"]
    alpha, beta = first["rooms"]
    assert (alpha["unreadCount"], alpha["unreadCapped"]) == (0, False)
    assert alpha["lastMessage"]["message"] == "newest" and alpha["lastMessage"]["userId"] == "bob"
    assert (beta["unreadCount"], beta["lastMessage"]["message"]) == (1, "first")
    second = ann.send("get_rooms", {"limit": 2, "cursor": first["nextCursor"]})["data"]
    assert second == {"rooms": [{"roomId": "gamma", "unreadCount": 0, "unreadCapped": False, "lastMessage": None}],
                      "nextCursor": None}
    assert world.connect("cy").send("get_rooms")["data"] == {"rooms": [], "nextCursor": None}


def test_get_rooms_shows_edits_and_deletes_of_the_last_message_and_cuts_long_text(world):
    ann = joined(world, "ann", "alpha")
    long_id = say(ann, "alpha", "y" * 300)
    [room] = ann.send("get_rooms")["data"]["rooms"]
    assert room["lastMessage"]["message"] == "y" * 200 and room["lastMessage"]["truncated"] is True
    ann.send("edit_message", {"roomId": "alpha", "messageId": long_id, "message": "short"})
    assert ann.send("get_rooms")["data"]["rooms"][0]["lastMessage"]["message"] == "short"
    ann.send("delete_message", {"roomId": "alpha", "messageId": long_id})
    last = ann.send("get_rooms")["data"]["rooms"][0]["lastMessage"]
    assert last["deleted"] is True and "message" not in last


def test_get_rooms_leaves_out_rooms_the_token_may_not_read(world):
    ann = joined(world, "ann", "case-1")
    joined(world, "ann", "lobby")
    narrowed = world.connect("ann", rooms={"case-*": ["read"]})
    assert [r["roomId"] for r in narrowed.send("get_rooms")["data"]["rooms"]] == ["case-1"]
    assert sorted(r["roomId"] for r in ann.send("get_rooms")["data"]["rooms"]) == ["case-1", "lobby"]


@pytest.mark.parametrize("data, field", [({"limit": 0}, "limit"), ({"limit": 51}, "limit"), ({"cursor": "nope"}, "cursor"),
                                          ({"cursor": 5}, "cursor"), ({"limit": "5"}, "limit")])
def test_get_rooms_validates_its_page(world, data, field):
    ann = world.connect("ann")
    assert refused(world, ann, "get_rooms", data, "validation_error")["details"][0]["field"] == field


# ---- a rejoin's changes to older messages ------------------------------------------------------
def clock_past_every_id(world: ChatWorld) -> None:
    """Move a fake clock past every ULID this process minted: ids are monotonic per process, so after
    a test that ran its clock ahead they would be minted later than the clock says, and a `since`
    taken from the clock would fall before them. The handlers' real clock needs nothing."""
    if isinstance(world, MemoryChatWorld):
        world.clock.ms = max(world.clock.ms, ulid_time_ms(new_ulid()) + 1)


def later(world: ChatWorld, ms: int) -> None:
    """Let `ms` pass on the chat's clock: the fake one moves, the handlers' real one is waited for."""
    if isinstance(world, MemoryChatWorld):
        world.clock.advance(ms)
        return
    import time

    time.sleep(ms / 1000)


def test_a_rejoin_brings_the_changes_made_while_away_to_messages_older_than_its_since(world):
    """An edit, a moderator's deletion and a reaction made while bob was away, each to a message
    older than his rejoin's `since`, reach him in the join's `changed`, as the messages stand now
    (newest change first); a change from before `since` (heard live) and the messages after it (in
    the page itself) do not."""
    clock_past_every_id(world)
    ann = joined(world, "ann", "lobby")
    mod = joined(world, "mo", "lobby", rooms={"*": ["read", "write", "moderate"]})
    bob = joined(world, "bob", "lobby")
    a0, a1, a2, a3 = (say(ann, "lobby", f"a{n}") for n in range(4))
    ann.send("edit_message", {"roomId": "lobby", "messageId": a0, "message": "heard live"})
    later(world, 5)
    since = ulid_at(world.now_ms())  # bob's rejoin position: after a3, after the live edit
    later(world, 5)
    world.disconnect(bob)
    ann.send("edit_message", {"roomId": "lobby", "messageId": a1, "message": "fixed"})
    later(world, 2)
    mod.send("delete_message", {"roomId": "lobby", "messageId": a2})
    later(world, 2)
    ann.send("react", {"roomId": "lobby", "messageId": a3, "emoji": "👍"})
    later(world, 2)
    a4 = say(ann, "lobby", "a4")
    ann.send("react", {"roomId": "lobby", "messageId": a4, "emoji": "🎉"})
    drain(ann, mod)

    back = world.connect("bob")
    history = back.send("join_room", {"roomId": "lobby", "since": since})["data"]
    assert [m["messageId"] for m in history["messages"]] == [a4] and history["messages"][0]["reactions"] == {"🎉": 1}
    assert [m["messageId"] for m in history["changed"]] == [a3, a2, a1] and history["moreChanged"] is False
    reacted, tombstone, edited = history["changed"]
    assert (reacted["message"], reacted["reactions"], reacted["version"]) == ("a3", {"👍": 1}, 2)
    assert (tombstone["deleted"], tombstone["deletedBy"], tombstone["version"]) == (True, "mo", 2) and "message" not in tombstone
    assert (edited["message"], edited["version"]) == ("fixed", 2) and edited["editedAt"]
    # Only a rejoin's answer carries them: not a join without since, nor a catch-up page.
    assert "changed" not in world.connect("cy").send("join_room", {"roomId": "lobby"})["data"]
    page = back.send("get_history", {"roomId": "lobby", "since": since})["data"]
    assert [m["messageId"] for m in page["messages"]] == [a4] and "changed" not in page and "moreChanged" not in page
