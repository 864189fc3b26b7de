"""Room access from the `rooms` claim: validation, matching, the DM rule and the compact encoding.

The property tests compare the implementation with an oracle written straight from the rules
in the issue and docs/SECURITY.md, so a shortcut in `parley.core.access` shows up as a
disagreement on some random claim, user and room.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.core.access import (
    MAX_PATTERNS,
    Action,
    ClaimError,
    DmRoomIdError,
    Grants,
    RoomAccessMode,
    allowed_actions,
    dm_participants,
    dm_room_id,
    permits,
)
from parley_testing.access_oracle import ACTIONS, oracle_allows


def grants_for(claim: dict[str, list[str]] | None, mode: str) -> Grants:
    return Grants.for_mode(RoomAccessMode(mode)) if claim is None else Grants.from_claim(claim)


# ---- strategies ------------------------------------------------------------------------------
# A small alphabet makes prefixes and exact matches collide often enough to matter.
room_chars = st.sampled_from(list("ab-:.1_"))
plain_room = st.text(room_chars, min_size=1, max_size=8).filter(lambda r: not r.startswith("dm:"))
users = st.sampled_from(["ann", "bob", "cy", "dee"])
pattern = st.one_of(
    st.just("*"),
    plain_room,
    st.text(room_chars, min_size=0, max_size=6).map(lambda prefix: prefix + "*"),
    st.tuples(users, users).filter(lambda p: p[0] != p[1]).map(lambda p: dm_room_id(*p)),
    st.sampled_from(["dm:*", "dm:ann:*"]),
)
claims = st.one_of(
    st.none(),
    st.dictionaries(pattern, st.lists(st.sampled_from(ACTIONS), unique=True, max_size=3), max_size=6),
)
dm_room = st.tuples(users, users).filter(lambda p: p[0] != p[1]).map(lambda p: dm_room_id(*p))
rooms = st.one_of(plain_room, dm_room)


def near_misses(claim: dict[str, list[str]] | None) -> list[str]:
    """Rooms at the edges of the claim's patterns: the bare prefix, one more character, one less."""
    candidates = []
    for pattern in claim or {}:
        stem = pattern.rstrip("*")
        candidates += [stem, stem + "a", stem[:-1]]
    return [room for room in candidates if room and not room.startswith("dm:")] or ["lobby"]


@settings(max_examples=600)
@given(
    claim=claims, mode=st.sampled_from(["open", "token"]), user=users, data=st.data(), action=st.sampled_from(ACTIONS)
)
def test_the_server_allows_exactly_what_the_rules_say(claim, mode, user, data, action):
    room = data.draw(st.one_of(rooms, st.sampled_from(near_misses(claim))))
    grants = grants_for(claim, mode)
    assert permits(grants, user, room, Action(action)) == oracle_allows(claim, mode, user, room, action)


@settings(max_examples=300)
@given(claim=claims, mode=st.sampled_from(["open", "token"]), user=users, room=rooms)
def test_the_compact_context_encoding_decides_exactly_like_the_claim(claim, mode, user, room):
    grants = grants_for(claim, mode)
    decoded = Grants.decode(grants.encode())
    assert allowed_actions(decoded, user, room) == allowed_actions(grants, user, room)


@given(a=users, b=users)
def test_dm_room_ids_are_sorted_and_belong_to_exactly_their_two_users(a, b):
    if a == b:
        with pytest.raises(DmRoomIdError):
            dm_participants(dm_room_id(a, b))
        return
    room = dm_room_id(a, b)
    assert room == dm_room_id(b, a)
    assert dm_participants(room) == tuple(sorted((a, b)))
    everything = Grants.from_claim({"*": ACTIONS})
    for user in ["ann", "bob", "cy", "dee"]:
        expected = {Action.READ, Action.WRITE} if user in (a, b) else set()
        assert allowed_actions(everything, user, room) == expected  # whatever the claim
        assert allowed_actions(Grants.for_mode(RoomAccessMode.TOKEN), user, room) == expected  # whatever the mode


@pytest.mark.parametrize("room", ["dm:", "dm:ann", "dm:ann:", "dm::bob", "dm:bob:ann", "dm:ann:ann", "dm:a:b:c"])
def test_any_other_dm_shape_is_refused(room):
    with pytest.raises(DmRoomIdError):
        dm_participants(room)


def test_rooms_that_merely_contain_dm_are_ordinary_rooms():
    assert dm_participants("xdm:ann:bob") is None
    assert dm_participants("DM:ann:bob") is None


# ---- modes -----------------------------------------------------------------------------------
def test_open_mode_grants_read_and_write_everywhere_but_never_moderate():
    grants = Grants.for_mode(RoomAccessMode.OPEN)
    assert allowed_actions(grants, "ann", "lobby") == {Action.READ, Action.WRITE}


def test_token_mode_without_a_claim_grants_nothing_but_dms():
    grants = Grants.for_mode(RoomAccessMode.TOKEN)
    assert allowed_actions(grants, "ann", "lobby") == set()
    assert allowed_actions(grants, "ann", "dm:ann:bob") == {Action.READ, Action.WRITE}


def test_patterns_add_up():
    grants = Grants.from_claim({"case-*": ["read"], "case-42": ["write"], "*": []})
    assert allowed_actions(grants, "ann", "case-42") == {Action.READ, Action.WRITE}
    assert allowed_actions(grants, "ann", "case-43") == {Action.READ}
    assert allowed_actions(grants, "ann", "case") == set()  # the prefix is `case-`


# ---- validation ------------------------------------------------------------------------------
BAD_CLAIMS = {
    "not an object": ["lobby"],
    "a string": "lobby=r",
    "10,000 patterns": {f"room-{n}": ["read"] for n in range(10_000)},
    "one pattern too many": {f"room-{n}": ["read"] for n in range(MAX_PATTERNS + 1)},
    "control character": {"lob\x00by": ["read"]},
    "newline": {"lobby\n": ["read"]},
    "DEL": {"lobby\x7f": ["read"]},
    "star in the middle": {"ca*se": ["read"]},
    "two stars": {"**": ["read"]},
    "empty pattern": {"": ["read"]},
    "space": {"the lobby": ["read"]},
    "too long": {"x" * 65: ["read"]},
    "prefix too long": {"x" * 64 + "*": ["read"]},
    "unknown action": {"lobby": ["admin"]},
    "action not a string": {"lobby": [1]},
    "actions not a list": {"lobby": "read"},
    "repeated action": {"lobby": ["read", "read"]},
    "separator in a pattern": {"a=b": ["read"]},
    "comma in a pattern": {"a,b": ["read"]},
}


@pytest.mark.parametrize("claim", BAD_CLAIMS.values(), ids=BAD_CLAIMS.keys())
def test_malformed_claims_are_refused(claim):
    with pytest.raises(ClaimError):
        Grants.from_claim(claim)


def test_the_largest_valid_claim_fits_the_authorizer_context():
    claim = {f"{n:02d}" + "x" * 61 + "*": ACTIONS for n in range(MAX_PATTERNS)}
    encoded = Grants.from_claim(claim).encode()
    assert len(encoded.encode()) < 4096  # API Gateway refuses an authorizer result over 8 KB


@pytest.mark.parametrize("text", ["", "lobby", "lobby=", "lobby=x", "lob by=r", "a=r,,b=r", "=r"])
def test_a_context_value_encode_cannot_write_is_refused(text):
    with pytest.raises(ClaimError):
        Grants.decode(text)


def test_an_empty_claim_round_trips_as_nothing():
    assert Grants.decode(Grants.from_claim({}).encode()) == Grants(())
    assert Grants.decode(Grants.from_claim({"lobby": []}).encode()) == Grants(())
