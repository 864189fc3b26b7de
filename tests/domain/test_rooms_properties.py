"""Room access as a property, on `ChatService` in memory: for random claims, modes, users and room
actions, the server refuses exactly what the oracle (written from the claim rules) refuses, and no
frame of a room (messages, presence, typing, receipts, reactions, history) ever reaches a
connection whose token may not read that room."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parley.core.access import RoomAccessMode
from parley_testing.access_oracle import ACTIONS, oracle_allows
from parley_testing.chat_world import MemoryChatWorld

USERS = ["ann", "bob", "cy"]
ROOMS = ["r1", "case-1", "case-2", "dm:ann:bob", "dm:bob:cy"]
PATTERNS = ["*", "r1", "r*", "case-*", "case-1", "dm:*", "dm:ann:bob"]
# The action each request needs (leave_room needs none and is sent too).
NEEDS = {
    "join_room": "read", "get_history": "read", "chat_message": "write", "typing": "write", "mark_read": "write",
    "react": "write", "leave_room": None,
}

claims = st.one_of(st.none(), st.dictionaries(st.sampled_from(PATTERNS), st.lists(st.sampled_from(ACTIONS), unique=True), max_size=4))
steps = st.lists(
    st.tuples(st.integers(0, len(USERS) - 1), st.sampled_from(sorted(NEEDS)), st.integers(0, len(ROOMS) - 1)),
    min_size=1,
    max_size=25,
)


def data_for(world: MemoryChatWorld, type_name: str, room: str) -> dict:
    newest = max((mid for (r, mid) in world.store.messages if r == room), default="01ARZ3NDEKTSV4RRFFQ69G5FAV")
    return {
        "join_room": {"roomId": room},
        "get_history": {"roomId": room},
        "leave_room": {"roomId": room},
        "chat_message": {"roomId": room, "message": "hi"},
        "typing": {"roomId": room, "isTyping": True},
        "mark_read": {"roomId": room, "messageId": newest},
        "react": {"roomId": room, "messageId": newest, "emoji": "👍"},
    }[type_name]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claim_list=st.lists(claims, min_size=len(USERS), max_size=len(USERS)), mode=st.sampled_from(["open", "token"]), plan=steps)
def test_the_server_refuses_exactly_what_the_claims_refuse_and_never_leaks_a_room(claim_list, mode, plan):
    world = MemoryChatWorld()
    world.use_room_access(RoomAccessMode(mode))
    claims_of = dict(zip(USERS, claim_list))
    clients = {user: world.connect(user, rooms=claims_of[user]) for user in USERS}

    def may(user: str, room: str, action: str) -> bool:
        return oracle_allows(claims_of[user], mode, user, room, action)

    for user_index, type_name, room_index in plan:
        user, room = USERS[user_index], ROOMS[room_index]
        reply = clients[user].send(type_name, data_for(world, type_name, room))
        needed = NEEDS[type_name]
        refused = reply is not None and reply["type"] == "error" and reply["data"]["code"] == "forbidden"
        if needed is not None and not may(user, room, needed):
            assert refused and reply["data"]["roomId"] == room and reply["data"]["action"] == needed, (user, type_name, room, reply)
        else:
            assert not refused, (user, type_name, room, reply)
        for someone, client in clients.items():
            for frame in client.take():
                frame_room = frame["data"].get("roomId") if isinstance(frame.get("data"), dict) else None
                if frame["type"] != "error" and frame_room is not None:
                    assert may(someone, frame_room, "read"), (someone, frame)
