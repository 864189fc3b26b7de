"""Leaving a room on the real store against DynamoDB Local: the user's last connection costs three
calls, and the counts stay exact when another connection of the same user leaves or joins between
a leave's calls (forced interleavings, then real threads), when a leave is retried, and when the
caller does not know the user."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any, Callable

import pytest

from parley.core.model import Member


def _id() -> str:
    return uuid.uuid4().hex[:10]


def _member(room: str, connection: str, user: str) -> Member:
    return Member(room, connection, user, f"name-{user}", 1)


def _room_state(ddb: Any, tables: Any, room: str) -> dict[str, Any]:
    """The room's partition read strongly: memberships per user, participant counts, the size item."""
    items = ddb.query(TableName=tables.Membership.Meta.table_name, KeyConditionExpression="roomId = :r",
                      ExpressionAttributeValues={":r": {"S": room}}, ConsistentRead=True)["Items"]
    memberships: Counter[str] = Counter()
    participants: dict[str, int] = {}
    size = 0
    for item in items:
        key = item["memberKey"]["S"]
        if key.startswith("c#"):
            memberships[item["userId"]["S"]] += 1
        elif key.startswith("u#"):
            participants[item["userId"]["S"]] = int(item["connections"]["N"])
        elif key.startswith("n#"):
            size = int(item["participants"]["N"])
    return {"memberships": dict(memberships), "participants": participants, "size": size}


def _consistent(state: dict[str, Any]) -> None:
    """A participant item exactly for each user with a connection in the room, counting them; the size counts users."""
    assert state["participants"] == state["memberships"], state
    assert state["size"] == len(state["memberships"]), state


class Calls:
    """The store's calls on the memberships table, recorded; `after` runs a hook once, right after
    the first call that matches (an interleaving forced between two calls of one leave)."""

    def __init__(self, tables: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[str] = []
        self._hook: tuple[Callable[[str, dict], bool], Callable[[], None]] | None = None
        models = (tables.Membership, tables.RoomParticipant, tables.RoomSize)
        clients = {id(c): c for c in (m._get_connection().connection.client for m in models)}  # the botocore clients
        for client in clients.values():
            monkeypatch.setattr(client, "_make_api_call", self._wrap(client._make_api_call))

    def _wrap(self, original: Callable[[str, dict], Any]) -> Callable[[str, dict], Any]:
        def call(operation: str, kwargs: dict) -> Any:
            if threading.current_thread() is threading.main_thread():
                self.made.append(operation)
            try:
                return original(operation, kwargs)
            finally:
                if self._hook is not None and self._hook[0](operation, kwargs):
                    hook, self._hook = self._hook[1], None
                    hook()
        return call

    def after(self, matches: Callable[[str, dict], bool], hook: Callable[[], None]) -> None:
        self._hook = (matches, hook)

    def take(self) -> Counter[str]:
        made, self.made = Counter(self.made), []
        return made


def _on_participant(operation: str, *, user: str) -> Callable[[str, dict], bool]:
    return lambda op, kwargs: op == operation and kwargs["Key"]["memberKey"]["S"] == f"u#{user}"


def test_a_users_last_connection_leaves_in_three_calls_and_another_in_three(layer, store, ddb, monkeypatch):
    tables, _ = layer
    room, user = f"leave-{_id()}", f"u{_id()}"
    for connection in ("c1", "c2"):
        store.join_room(_member(room, connection, user))
    store.join_room(_member(room, "other", "someone-else"))
    calls = Calls(tables, monkeypatch)
    # Another connection still in: the membership delete, the participant delete that fails, ADD -1.
    stays = store.leave_room(room, "c1", user)
    assert (stays.left, stays.last_for_user) == (True, False)
    assert calls.take() == Counter({"DeleteItem": 2, "UpdateItem": 1})
    # The last one: the membership delete, the participant delete (answering the name), the size's ADD -1.
    last = store.leave_room(room, "c2", user)
    assert (last.left, last.last_for_user, last.room_size, last.name) == (True, True, 1, f"name-{user}")
    assert calls.take() == Counter({"DeleteItem": 2, "UpdateItem": 1})
    # A retry (or a second clean-up) finds no membership: one failed conditional delete, nothing changed.
    assert store.leave_room(room, "c2", user) == type(last)(False, False, 0)
    assert calls.take() == Counter({"DeleteItem": 1})
    state = _room_state(ddb, tables, room)
    assert state == {"memberships": {"someone-else": 1}, "participants": {"someone-else": 1}, "size": 1}


def test_without_the_user_the_membership_delete_says_who_it_was(layer, store, ddb, monkeypatch):
    tables, _ = layer
    room, user = f"anon-{_id()}", f"u{_id()}"
    store.join_room(_member(room, "c1", user))
    calls = Calls(tables, monkeypatch)
    outcome = store.leave_room(room, "c1", None)
    assert (outcome.left, outcome.last_for_user, outcome.room_size, outcome.name) == (True, True, 0, f"name-{user}")
    assert calls.take() == Counter({"DeleteItem": 2, "UpdateItem": 1})  # no GetItem first
    _consistent(_room_state(ddb, tables, room))


def test_two_connections_of_a_user_leaving_between_each_others_calls_count_them_out_once(layer, store, ddb, monkeypatch):
    tables, _ = layer
    room, user = f"both-{_id()}", f"u{_id()}"
    for connection in ("c1", "c2"):
        store.join_room(_member(room, connection, user))
    calls = Calls(tables, monkeypatch)
    seen: list[Any] = []
    # c1's participant delete fails (two connections counted); c2 leaves entirely before c1's ADD -1.
    calls.after(_on_participant("DeleteItem", user=user), lambda: seen.append(store.leave_room(room, "c2", user)))
    first = store.leave_room(room, "c1", user)
    (second,) = seen
    assert sorted([first.last_for_user, second.last_for_user]) == [False, True]  # exactly one departure
    assert _room_state(ddb, tables, room) == {"memberships": {}, "participants": {}, "size": 0}


def test_a_join_between_a_leaves_count_reaching_zero_and_its_delete_keeps_the_user_and_the_size(layer, store, ddb, monkeypatch):
    tables, _ = layer
    room, user = f"rejoin-{_id()}", f"u{_id()}"
    store.join_room(_member(room, "bystander", "b"))
    for connection in ("c1", "c2"):
        store.join_room(_member(room, connection, user))
    calls = Calls(tables, monkeypatch)
    joined: list[Any] = []
    # c1: its delete fails (2); c2 leaves (its delete fails too, ADD -1 -> 1); c1's ADD -1 -> 0; then,
    # before c1's retried delete, the user's new connection c3 joins (ADD 0 -> 1: an arrival, size +1).
    calls.after(_on_participant("DeleteItem", user=user), lambda: (
        store.leave_room(room, "c2", user),
        calls.after(_on_participant("UpdateItem", user=user), lambda: joined.append(store.join_room(_member(room, "c3", user)))),
    ))
    left = store.leave_room(room, "c1", user)
    (arrival,) = joined
    # The count went 1 -> 0 -> 1: a departure and an arrival, each counted once, so the size is right.
    assert left.last_for_user and arrival.first_for_user
    state = _room_state(ddb, tables, room)
    assert state["memberships"] == {"b": 1, user: 1}
    _consistent(state)


def test_connections_of_one_user_joining_and_leaving_on_threads_keep_every_count_exact(layer, store, ddb):
    tables, _ = layer
    room = f"threads-{_id()}"
    users = [f"u{_id()}" for _ in range(3)]
    arrivals, departures = Counter[str](), Counter[str]()
    lock = threading.Lock()

    def churn(user: str, worker: int) -> None:
        for n in range(6):
            connection = f"{user}-{worker}-{n}"
            if store.join_room(_member(room, connection, user)).first_for_user:
                with lock:
                    arrivals[user] += 1
            if n % 3 != 2:  # some connections stay
                outcome = store.leave_room(room, connection, user if n % 2 else None)
                if outcome.last_for_user:
                    with lock:
                        departures[user] += 1

    threads = [threading.Thread(target=churn, args=(user, worker)) for user in users for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    state = _room_state(ddb, tables, room)
    _consistent(state)
    # Arrivals and departures pair up: each user counted in once more than out (they still have connections in).
    assert {user: arrivals[user] - departures[user] for user in users} == {user: 1 for user in users}
    assert state["memberships"] == {user: 8 for user in users}


def test_members_among_reads_the_rooms_range_of_them_consistently_and_nothing_else(layer, store, monkeypatch):
    tables, _ = layer
    room, elsewhere = f"among-{_id()}", f"else-{_id()}"
    for n in range(12):
        store.join_room(_member(room, f"k{n:02d}", f"u{n}"))
    store.join_room(_member(elsewhere, "k05x", "u-else"))
    store.open_reader(room, "u1")
    for n in (3, 4, 9):
        store.leave_room(room, f"k{n:02d}", None)
    calls = Calls(tables, monkeypatch)
    asked = ["k02", "k03", "k04", "k05x", "k09", "k10", "nobody"]
    # Just deleted, so only a strongly consistent read is sure not to list k03, k04 and k09.
    assert store.members_among(room, asked) == {"k02", "k10"}
    assert calls.take() == Counter({"Query": 1})
    assert store.members_among(room, []) == set() and calls.take() == Counter()
