"""Per-user allowances, and what one execution environment remembers about who is over them.

The shared truth is a counter per user, allowance and fixed window in DynamoDB (an UpdateItem ADD).
Writing it for every frame would cost each chat message 1 WRU and a round trip, although a count only
matters near the limit: `AllowanceLedger` lets an environment accept a user's frames from memory
while it is sure they are well below the allowance, and add them to the counter in batches of `k`.
A flood is expensive the other way round: every refused frame would still cost the membership Query
and the counter write, taken from everyone else's capacity. A user who is over an allowance stays
over until the window ends, so an environment that has refused them once refuses their next frames
from memory (`OverLimitMemory`) and adds them to the shared counter in batches too.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# A user sending this many times their allowance in one window is flooding: the connection is closed.
ABUSE_FACTOR = 10


@dataclass(frozen=True)
class RateLimits:
    """Per-user allowances per window: `chat` for chat messages, `signals` for typing and read receipts,
    `joins` for joining and leaving rooms.

    Joins have an allowance of their own, not a share of the signals': a reconnecting client rejoins
    every room it was in at once, from each of its tabs, and must not then be refused its typing and
    reads; and a join costs several writes and reads where a signal costs one, so a client looping on
    join_room and leave_room is bounded by a count sized for reconnects, not for typing.

    `chat_batch`, `signals_batch` and `joins_batch` are the `k` of `AllowanceLedger`: 1 counts every frame on the
    shared counter at once (exact across environments, one counter write per frame), and so does a
    batch above the allowance (the ledger could never stay `k` below the limit) or below 1. The
    deployment's batches are checked once, at cold start, by `parley.aws.config.Settings`: this
    value is built per request, and a check here would fail every request instead of the start.
    """

    chat: int = 30
    signals: int = 120
    window_seconds: int = 10
    chat_batch: int = 1
    signals_batch: int = 1
    joins: int = 100
    joins_batch: int = 1

    def limit_of(self, kind: str) -> int:
        return {"chat": self.chat, "joins": self.joins}.get(kind, self.signals)

    def batch_of(self, kind: str) -> int:
        return {"chat": self.chat_batch, "joins": self.joins_batch}.get(kind, self.signals_batch)

    def window_at(self, now_ms: int) -> int:
        return now_ms // (self.window_seconds * 1000)

    @property
    def counter_lifetime_seconds(self) -> int:
        """A window's counter outlives the window, so a request at its very end still finds it."""
        return 2 * self.window_seconds

    def retry_after_ms(self, now_ms: int) -> int:
        """Time until the current window ends, when the allowance is whole again."""
        window_ms = self.window_seconds * 1000
        return (now_ms // window_ms + 1) * window_ms - now_ms


class OverLimitMemory:
    """Users this execution environment refused in their current window, per allowance.

    Lambda runs many environments and each has its own memory, so this is an optimisation and
    never the authority: a user is remembered only after the shared counter said they were over,
    and the frames refused from memory still reach that counter, at most one batch late per
    environment. The flood close reads the counter, so it still sees every environment's share.
    """

    def __init__(self, max_users: int = 10_000) -> None:
        self._max_users = max_users
        # (allowance, user) -> [window, refusals not yet added to the shared counter], least recently
        # remembered first: a plain dict's first key costs a walk past every deleted slot before it.
        self._over: OrderedDict[tuple[str, str], list[int]] = OrderedDict()

    def remember(self, kind: str, user_id: str, window: int) -> None:
        """The shared counter said `user_id` is over `kind` in `window`.

        Past `max_users`, the user remembered longest ago is forgotten: it only costs that user the
        full checks again, and the refusals it had not yet added to the counter (fewer than the
        allowance) go uncounted, the same bound as a counter write that fails.
        """
        key = (kind, user_id)
        if key in self._over:
            self._over.move_to_end(key)  # remembered again (a new window): the newest, not the oldest
        elif len(self._over) >= self._max_users:
            self._over.popitem(last=False)
        self._over[key] = [window, 0]

    def refuse(self, kind: str, user_id: str, window: int) -> int | None:
        """Count one more refusal if the user is known to be over in `window`.

        Returns the refusals not yet on the shared counter (this one included), or None when the
        user is not known to be over and the frame must take the full checks.
        """
        key = (kind, user_id)
        entry = self._over.get(key)
        if entry is None:
            return None
        if entry[0] != window:
            del self._over[key]  # a new window: the allowance is whole again
            return None
        entry[1] += 1
        return entry[1]

    def counted(self, kind: str, user_id: str, refusals: int) -> None:
        """`refusals` of the user's remembered refusals were added to the shared counter."""
        entry = self._over.get((kind, user_id))
        if entry is not None:
            entry[1] = max(0, entry[1] - refusals)

    def clear(self) -> None:
        self._over.clear()


class AllowanceLedger:
    """What this execution environment accepted of each user's allowance and has not yet counted.

    Per (allowance, user) it keeps, for the current window only, the frames it accepted but has not
    added to the shared counter (`unflushed`) and the counter's total when it last wrote it
    (`known`). A frame is accepted without any write while `unflushed + 1 < k` and
    `known + unflushed + 1 <= limit - k`; otherwise the frame and the unflushed ones are added at
    once and the counter's answer decides (and refuses, past the limit). So:

    - a user who sends fewer than `k` frames per window through one environment never causes a
      counter write (most chat users);
    - one environment alone is exact: what it accepts without a write keeps `known + unflushed`
      at most `limit - k`, and from there on every frame is counted before it is accepted;
    - a refusal always follows a write, so it is always decided on a fresh total;
    - across E environments serving one user in one window at most `limit + (E - 1)(k - 1)` frames
      are accepted: once a write answers past the limit, nothing more is accepted by the environment
      that made it, and every other environment holds at most `k - 1` accepted frames the counter
      has not seen (it writes at the k-th, and is then refused too). E is every warm environment,
      of every function sharing the allowance, that the user's frames reach: Lambda routes a frame
      to any free environment, so in a busy deployment E is large even for a client sending one
      frame at a time, and the limit is soft (docs/SECURITY.md). `k` = 1 makes it exact.

    The counter still counts every frame in the end, refused ones included, so the flood close
    (which reads it) lags by at most `k - 1` frames per environment. A write that fails (the frame
    then gets `internal_error`) loses the at most `k - 1` frames it carried besides its own. Like `OverLimitMemory` it is
    bounded: when full it drops the entry whose window began first, which is a past window's while
    there is one, else the oldest user's, whose at most `k - 1` unflushed frames then go uncounted.
    Once it has dropped an entry of the current window, it no longer knows who it forgot, so in that
    window a user it has no entry for has their first frame counted at once: the counter's answer
    restores the known total, and the limit holds for them as it did before.
    """

    def __init__(self, max_users: int = 10_000) -> None:
        self._max_users = max_users
        # (allowance, user) -> [window, known counter total, accepted frames not yet on it], in the
        # order the entries' windows began: an environment serves one request at a time, so windows
        # never decrease along it and the first entry is always the one to drop (O(1) to find).
        self._entries: OrderedDict[tuple[str, str], list[int]] = OrderedDict()
        # The latest window of which an entry was dropped before the window ended.
        self._dropped_window = -1

    def take(self, kind: str, user_id: str, window: int, limit: int, batch: int) -> int:
        """One frame of `user_id` against allowance `kind` (`limit` per window, batches of `batch`).

        Returns 0 when the frame is accepted from memory (no write), else the count to add to the
        shared counter now, this frame included; the caller decides on the total it gets back and
        reports it through `counted`.
        """
        key = (kind, user_id)
        entry = self._entries.get(key)
        if entry is None and window <= self._dropped_window:  # maybe dropped: ask the counter
            self._entry(key, window)
            return 1
        if entry is None or entry[0] != window:  # a new window: unflushed frames no longer matter
            entry = self._entry(key, window)
        pending = entry[2] + 1
        if pending < batch and entry[1] + pending <= limit - batch:
            entry[2] = pending
            return 0
        entry[2] = 0
        return pending

    def counted(self, kind: str, user_id: str, window: int, total: int) -> None:
        """The shared counter of (`kind`, `user_id`, `window`) answered `total` after a write."""
        entry = self._entries.get((kind, user_id))
        if entry is not None and entry[0] == window:
            entry[1] = max(entry[1], total)

    def unflushed(self, kind: str, user_id: str, window: int) -> int:
        """Frames accepted in `window` that the shared counter has not seen yet."""
        entry = self._entries.get((kind, user_id))
        return entry[2] if entry is not None and entry[0] == window else 0

    def _entry(self, key: tuple[str, str], window: int) -> list[int]:
        """A fresh entry for `key` in `window`, placed last; when full, the first entry makes room."""
        self._entries.pop(key, None)
        if len(self._entries) >= self._max_users:
            _, (dropped, _, _) = self._entries.popitem(last=False)
            if dropped >= window:
                self._dropped_window = max(self._dropped_window, dropped)
        entry = self._entries[key] = [window, 0, 0]
        return entry

    def clear(self) -> None:
        self._entries.clear()
        self._dropped_window = -1
