"""Per-user allowances, and what one execution environment remembers about who is over them.

The shared truth is a counter per user, allowance and fixed window in DynamoDB (one UpdateItem per
request). That alone makes a flood expensive: every refused frame would still cost the membership
Query and the counter write, and those are taken from everyone else's capacity. A user who is over
an allowance stays over until the window ends, so an environment that has refused them once
refuses their next frames from memory and adds them to the shared counter in batches.
"""

from __future__ import annotations

from dataclasses import dataclass

# A user sending this many times their allowance in one window is flooding: the connection is closed.
ABUSE_FACTOR = 10


@dataclass(frozen=True)
class RateLimits:
    """Per-user allowances per window: `chat` for chat messages, `signals` for typing and read receipts."""

    chat: int = 30
    signals: int = 120
    window_seconds: int = 10

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
        # (allowance, user) -> [window, refusals not yet added to the shared counter]
        self._over: dict[tuple[str, str], list[int]] = {}

    def remember(self, kind: str, user_id: str, window: int) -> None:
        """The shared counter said `user_id` is over `kind` in `window`."""
        key = (kind, user_id)
        if key not in self._over and len(self._over) >= self._max_users:
            # Forget the oldest: it only costs that user the full checks again.
            del self._over[next(iter(self._over))]
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
