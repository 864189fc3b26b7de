"""Issue 12 in headless Chromium: the /ws-test page keeps a room's participants and its count
through parley-client.js against `parley dev`: `user_joined`/`user_left` in a small room, and
coalesced `presence_update` frames in a room at `PresenceThreshold` (2 here, its MinValue)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from parley_testing.browser import DevGateway, open_ws_test
from parley_testing.moto_process import MotoServer
from parley_testing.ports import free_port

# A presence_update waits for the stream poller and the batching window (1 s), and a function's first
# invocation (a cold start: GetParticipantsFunction, PresenceFunction) imports its code: allow for a loaded machine.
SLOW_MS = 45_000


def _count(page: Any, want: int, timeout_ms: int = 15_000) -> None:
    """The page shows `want` online, and the client says the same."""
    page.wait_for_function("n => document.getElementById('participant-count').textContent === String(n)", arg=want, timeout=timeout_ms)


def _listed(page: Any) -> list[str]:
    return sorted(page.locator("#participants li").evaluate_all("els => els.map((e) => e.dataset.userId)"))


def _record_frames(page: Any) -> None:
    """Count the presence frames the page's client receives from now on."""
    page.evaluate(
        """() => {
          window.seen = { user_joined: 0, user_left: 0, presence_update: 0 };
          for (const t of Object.keys(window.seen)) window.parley.on(t, () => { window.seen[t] += 1; });
        }"""
    )


def test_a_small_room_shows_who_joins_and_leaves_and_the_count(context, gateway: DevGateway, room_id: str):
    alice = open_ws_test(context, gateway, "alice", room_id)
    _count(alice, 1)
    _record_frames(alice)
    bob = open_ws_test(context, gateway, "bob", room_id)
    alice.locator("#participants li[data-user-id=bob]").wait_for()
    _count(alice, 2)
    _count(bob, 2)
    assert _listed(alice) == ["alice", "bob"] and _listed(bob) == ["alice", "bob"]

    bob.click("#leave")
    alice.locator("#participants li[data-user-id=bob]").wait_for(state="detached")
    _count(alice, 1)
    snap = alice.evaluate("r => window.parley.participants(r)", room_id)
    assert [p["userId"] for p in snap["participants"]] == ["alice"] and snap["count"] == 1 and snap["hasMore"] is False
    assert alice.evaluate("() => window.seen") == {"user_joined": 1, "user_left": 1, "presence_update": 0}
    assert alice.locator("#participants-more").is_hidden()
    assert alice.errors == [] and bob.errors == []


def test_paging_and_a_stale_cursor_against_the_real_server(context, gateway: DevGateway, room_id: str):
    """Pages of one (`limit`), the server's own cursors, and the `validation_error` a cursor gets
    once its participant has left: the client starts over from the first page by itself."""
    pages = {u: open_ws_test(context, gateway, u, room_id) for u in ("alice", "bob", "carol")}
    carol = pages["carol"]
    _count(carol, 3)
    state = "r => window.parley.participants(r)"
    settled = "r => { const s = window.parley.participants(r); return !s.loading && s.participants.length === %d; }"
    carol.evaluate("r => window.parley.send('get_participants', { roomId: r, limit: 1 })", room_id)
    carol.wait_for_function(settled % 1, arg=room_id, timeout=SLOW_MS)
    snap = carol.evaluate(state, room_id)
    assert [p["userId"] for p in snap["participants"]] == ["alice"] and snap["count"] == 3 and snap["hasMore"] is True
    carol.evaluate("r => window.parley.loadMoreParticipants(r, { limit: 1 })", room_id)
    carol.wait_for_function(settled % 2, arg=room_id, timeout=SLOW_MS)
    assert [p["userId"] for p in carol.evaluate(state, room_id)["participants"]] == ["alice", "bob"]

    # The cursor now names bob; bob leaves, so it is stale.
    pages["bob"].click("#leave")
    carol.locator("#participants li[data-user-id=bob]").wait_for(state="detached")
    carol.evaluate(
        """r => {
          window.errors = [];
          window.out = [];
          window.parley.on('error', (e) => window.errors.push(e));
          window.parley.on('frame', (f) => {
            const frame = JSON.parse(f.raw);
            if (f.direction === 'out' && frame.type === 'get_participants') window.out.push(frame.data);
          });
          window.parley.loadMoreParticipants(r);
        }""",
        room_id,
    )
    carol.wait_for_function(settled % 2, arg=room_id, timeout=SLOW_MS)
    snap = carol.evaluate(state, room_id)
    assert [p["userId"] for p in snap["participants"]] == ["alice", "carol"] and snap["count"] == 2 and snap["hasMore"] is False
    errors = carol.evaluate("() => window.errors")
    assert [(e["code"], e["requestType"], e["details"][0]["field"]) for e in errors] == [("validation_error", "get_participants", "cursor")]
    out = carol.evaluate("() => window.out")
    assert [sorted(d) for d in out] == [["cursor", "roomId"], ["roomId"]], out  # the stale page, then one first page
    assert all(page.errors == [] for page in pages.values())


@pytest.fixture(scope="module")
def presence_gateway(log_dir: Path) -> Iterator[DevGateway]:
    """`parley dev` with PresenceThreshold=2 (every room of two or more hears presence_update), on a
    DynamoDB of its own: a second gateway polling the same memberships stream would run
    PresenceFunction for this one's rooms too, find its connections "gone" and remove them."""
    db = MotoServer(log_dir / "moto-presence.log").start()
    gw = DevGateway(free_port(), log_dir, db.endpoint, overrides={"PresenceThreshold": "2"})
    try:
        yield gw.start()
    finally:
        gw.stop()
        db.stop()


def test_a_large_room_shows_joins_and_leaves_from_presence_updates(context, presence_gateway: DevGateway, room_id: str):
    alice = open_ws_test(context, presence_gateway, "alice", room_id)
    _count(alice, 1)
    _record_frames(alice)
    bob = open_ws_test(context, presence_gateway, "bob", room_id)
    _count(bob, 2)  # bob's own join answer: participants_list, at once
    carol = open_ws_test(context, presence_gateway, "carol", room_id)
    _count(carol, 3)

    _count(alice, 3, SLOW_MS)
    assert _listed(alice) == ["alice", "bob", "carol"]

    carol.click("#leave")
    alice.locator("#participants li[data-user-id=carol]").wait_for(state="detached", timeout=SLOW_MS)
    _count(alice, 2, SLOW_MS)
    _count(bob, 2, SLOW_MS)
    assert _listed(alice) == ["alice", "bob"] and _listed(bob) == ["alice", "bob"]
    seen = alice.evaluate("() => window.seen")
    assert seen["presence_update"] >= 2 and seen["user_joined"] == 0 and seen["user_left"] == 0, seen
    assert alice.errors == [] and bob.errors == [] and carol.errors == []
