"""What one execution environment remembers about users over their allowance."""

from __future__ import annotations

from parley.core.rate_limits import OverLimitMemory, RateLimits


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


def test_retry_after_is_the_rest_of_the_window():
    limits = RateLimits(window_seconds=10)
    assert limits.window_at(25_000) == 2 and limits.retry_after_ms(25_000) == 5_000
    assert limits.retry_after_ms(30_000) == 10_000
