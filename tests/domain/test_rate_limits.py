"""What one execution environment remembers about users over their allowance, and what it
accepted of their allowance without writing the shared counter yet."""

from __future__ import annotations

import itertools

import pytest

from parley.core.rate_limits import AllowanceLedger, OverLimitMemory, RateLimits


def test_unknown_users_take_the_full_checks():
    memory = OverLimitMemory()
    assert memory.refuse("chat", "alice", window=7) is None


def test_refusals_count_up_until_added_to_the_shared_counter():
    memory = OverLimitMemory()
    memory.remember("chat", "alice", window=7)
    assert [memory.refuse("chat", "alice", window=7) for _ in range(3)] == [1, 2, 3]
    memory.counted("chat", "alice", 3)
    assert memory.refuse("chat", "alice", window=7) == 1
    # Allowances and users are apart.
    assert memory.refuse("signals", "alice", window=7) is None
    assert memory.refuse("chat", "bob", window=7) is None


def test_a_new_window_forgets_the_user():
    memory = OverLimitMemory()
    memory.remember("chat", "alice", window=7)
    assert memory.refuse("chat", "alice", window=8) is None
    assert memory.refuse("chat", "alice", window=7) is None  # forgotten, not resurrected


def test_memory_is_bounded_and_forgets_the_oldest_first():
    memory = OverLimitMemory(max_users=2)
    for user in ("a", "b", "c"):
        memory.remember("chat", user, window=1)
    assert memory.refuse("chat", "a", window=1) is None
    assert memory.refuse("chat", "b", window=1) == 1 and memory.refuse("chat", "c", window=1) == 1


def test_a_user_remembered_again_is_the_newest_not_the_oldest():
    memory = OverLimitMemory(max_users=2)
    memory.remember("chat", "a", window=1)
    memory.remember("chat", "b", window=1)
    memory.remember("chat", "a", window=2)  # over again in the next window
    memory.remember("chat", "c", window=2)  # full: b, remembered longest ago, goes
    assert memory.refuse("chat", "b", window=1) is None
    assert memory.refuse("chat", "a", window=2) == 1 and memory.refuse("chat", "c", window=2) == 1


def test_a_full_memory_keeps_forgetting_one_user_per_newcomer():
    memory = OverLimitMemory(max_users=100)
    for n in range(1_000):
        memory.remember("chat", f"u{n}", window=1)
    assert [memory.refuse("chat", f"u{n}", window=1) for n in (0, 899, 900, 999)] == [None, None, 1, 1]


def test_retry_after_is_the_rest_of_the_window():
    limits = RateLimits(window_seconds=10)
    assert limits.window_at(25_000) == 2 and limits.retry_after_ms(25_000) == 5_000
    assert limits.retry_after_ms(30_000) == 10_000


class SharedCounter:
    """The DynamoDB rate counter as `count_request` keeps it: one total per (allowance, user, window)."""

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str, int], int] = {}
        self.writes = 0

    def add(self, kind: str, user: str, window: int, hits: int) -> int:
        self.writes += 1
        key = (kind, user, window)
        self.totals[key] = self.totals.get(key, 0) + hits
        return self.totals[key]


def frame(ledger: AllowanceLedger, counter: SharedCounter, *, limit: int, batch: int, window: int = 7,
          kind: str = "chat", user: str = "alice") -> bool:
    """One frame through the ledger as `ChatService` drives it: accepted or refused."""
    hits = ledger.take(kind, user, window, limit, batch)
    if hits == 0:
        return True
    total = counter.add(kind, user, window, hits)
    ledger.counted(kind, user, window, total)
    return total <= limit


def test_a_slow_sender_never_writes_the_counter():
    ledger, counter = AllowanceLedger(), SharedCounter()
    for window in range(5):
        assert all(frame(ledger, counter, limit=30, batch=5, window=window) for _ in range(4))
    assert counter.writes == 0 and ledger.unflushed("chat", "alice", 4) == 4


def test_the_kth_frame_writes_the_batch():
    ledger, counter = AllowanceLedger(), SharedCounter()
    assert [ledger.take("chat", "alice", 7, 30, 5) for _ in range(5)] == [0, 0, 0, 0, 5]
    assert ledger.unflushed("chat", "alice", 7) == 0


@pytest.mark.parametrize(("limit", "batch"), [(30, 5), (30, 1), (30, 30), (120, 11), (3, 2), (1, 1)])
def test_one_environment_alone_is_exact(limit, batch):
    ledger, counter = AllowanceLedger(), SharedCounter()
    accepted = [frame(ledger, counter, limit=limit, batch=batch) for _ in range(limit + 5)]
    assert accepted == [True] * limit + [False] * 5
    # Everything reached the counter: the refusals were each decided on a write.
    assert counter.totals[("chat", "alice", 7)] == limit + 5


def test_near_the_limit_every_frame_is_counted_and_a_refusal_follows_a_fresh_read():
    ledger, counter = AllowanceLedger(), SharedCounter()
    writes = []
    for _ in range(31):
        before = counter.writes
        accepted = frame(ledger, counter, limit=30, batch=5)
        writes.append(counter.writes - before)
    # Batches of 5 up to 25 (limit - k), then every frame: 10 writes for 30 accepted frames.
    assert writes == ([0, 0, 0, 0, 1] * 5) + [1] * 6 and not accepted
    # Another environment's frames are seen at the next write: the refusal comes at once.
    other, counter2 = AllowanceLedger(), SharedCounter()
    counter2.add("chat", "alice", 7, 28)  # 28 frames counted elsewhere
    assert [frame(other, counter2, limit=30, batch=5) for _ in range(5)] == [True] * 4 + [False]
    assert counter2.totals[("chat", "alice", 7)] == 33  # the 5th frame's write read 33: refused on it


@pytest.mark.parametrize(("limit", "batch", "environments"), [(30, 5, 2), (30, 5, 4), (120, 11, 3), (10, 3, 5)])
def test_several_environments_overshoot_by_at_most_e_minus_1_times_k_minus_1(limit, batch, environments):
    worst = 0
    # Every interleaving pattern of a few shapes: round robin, bursts per environment, and the one
    # that keeps every other environment one frame short of its batch before the first one writes.
    orders = [
        itertools.islice(itertools.cycle(range(environments)), 10 * limit),
        (e for e in range(environments) for _ in range(limit * 2)),
        itertools.chain((e for e in range(1, environments) for _ in range(batch - 1)), itertools.repeat(0, 3 * limit)),
    ]
    for n, order in enumerate(orders):
        counter = SharedCounter()
        ledgers = [AllowanceLedger() for _ in range(environments)]
        accepted = sum(frame(ledgers[e], counter, limit=limit, batch=batch, window=n) for e in order)
        worst = max(worst, accepted)
        assert accepted <= limit + (environments - 1) * (batch - 1), (n, accepted)
    # The bound is reached: the last order leaves E-1 environments holding k-1 uncounted frames each.
    assert worst == limit + (environments - 1) * (batch - 1)


def test_a_new_window_discards_the_unflushed_count_and_the_known_total():
    ledger, counter = AllowanceLedger(), SharedCounter()
    for _ in range(31):
        frame(ledger, counter, limit=30, batch=5, window=7)
    assert not frame(ledger, counter, limit=30, batch=5, window=7)
    assert [ledger.take("chat", "alice", 8, 30, 5) for _ in range(3)] == [0, 0, 0]
    assert ledger.unflushed("chat", "alice", 7) == 0 and ledger.unflushed("chat", "alice", 8) == 3
    # An answer about an old window changes nothing in the new one.
    ledger.counted("chat", "alice", 7, 500)
    assert ledger.take("chat", "alice", 8, 30, 5) == 0


def test_allowances_and_users_are_counted_apart():
    ledger = AllowanceLedger()
    assert [ledger.take("chat", "alice", 7, 30, 5) for _ in range(4)] == [0] * 4
    assert ledger.take("signals", "alice", 7, 120, 11) == 0 and ledger.take("chat", "bob", 7, 30, 5) == 0
    assert ledger.take("chat", "alice", 7, 30, 5) == 5


def test_the_ledger_is_bounded_and_drops_past_windows_first():
    ledger = AllowanceLedger(max_users=2)
    ledger.take("chat", "old", 6, 30, 5)
    ledger.take("chat", "a", 7, 30, 5)
    ledger.take("chat", "b", 7, 30, 5)  # full: "old" (a past window) goes, "a" stays
    assert ledger.unflushed("chat", "a", 7) == 1 and ledger.unflushed("chat", "old", 6) == 0
    ledger.take("chat", "c", 7, 30, 5)  # full, nothing stale: the oldest ("a") goes
    assert ledger.unflushed("chat", "a", 7) == 0 and ledger.unflushed("chat", "b", 7) == 1


def test_a_user_dropped_from_a_full_ledger_is_re_read_from_the_shared_counter():
    """Dropping an entry of the current window forgets what the counter said: the user's next frame
    asks it again, so no one gets a fresh allowance from this environment's memory limit."""
    ledger, counter = AllowanceLedger(max_users=2), SharedCounter()
    assert all(frame(ledger, counter, limit=30, batch=5) for _ in range(28))
    assert counter.totals[("chat", "alice", 7)] == 28 and ledger.unflushed("chat", "alice", 7) == 0
    for user in ("bob", "carol"):  # full with alice and bob: carol's frame drops alice
        frame(ledger, counter, limit=30, batch=5, user=user)
    writes = counter.writes
    assert [frame(ledger, counter, limit=30, batch=5) for _ in range(4)] == [True, True, False, False]
    assert counter.writes - writes == 4 and counter.totals[("chat", "alice", 7)] == 32  # every frame counted


def test_after_a_drop_only_the_window_it_happened_in_asks_the_counter_first():
    ledger = AllowanceLedger(max_users=1)
    ledger.take("chat", "alice", 7, 30, 5)
    assert ledger.take("chat", "bob", 7, 30, 5) == 0  # nothing forgotten yet; drops alice in window 7
    assert ledger.take("chat", "carol", 7, 30, 5) == 1  # carol may have been dropped: counted at once
    assert ledger.take("chat", "alice", 8, 30, 5) == 0  # drops carol's past window: nothing forgotten in 8


def test_a_batch_below_one_counts_every_frame_at_once_and_is_not_checked_per_request():
    """The deployment's batches are refused at cold start (parley.aws.config); the value built per request is not re-checked."""
    limits = RateLimits(chat=30, chat_batch=0)
    ledger = AllowanceLedger()
    assert [ledger.take("chat", "a", 7, limits.chat, limits.chat_batch) for _ in range(3)] == [1, 1, 1]


def test_a_batch_above_the_allowance_counts_every_frame_at_once():
    RateLimits(chat=3, chat_batch=5)  # accepted: no deploy-time rule can compare the two parameters
    ledger = AllowanceLedger()
    assert [ledger.take("chat", "a", 7, 3, 5) for _ in range(4)] == [1, 1, 1, 1]  # a write per frame, none from memory


def test_joins_have_an_allowance_and_a_batch_of_their_own():
    limits = RateLimits(chat=30, signals=120, chat_batch=5, signals_batch=11, joins=100, joins_batch=10)
    assert [limits.limit_of(kind) for kind in ("chat", "signals", "joins")] == [30, 120, 100]
    assert [limits.batch_of(kind) for kind in ("chat", "signals", "joins")] == [5, 11, 10]
    assert RateLimits().joins == 100  # a user in 30 rooms reconnecting from three tabs: 90 joins
