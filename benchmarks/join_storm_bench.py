"""PostToConnection calls and store calls of a 1,000-join storm into one room.

The real `ChatService` on the in-memory store (`parley_testing.chat_world.MemoryChatWorld`), so
the figures are the chat rules' own, free of I/O noise. The storm arrives at a given number of
joins per presence interval; after each interval's joins the presence function runs once, as the
memberships table's stream batches them on AWS (and `parley dev`'s stream poller locally).

The baseline in the same run is the same storm with presence coalescing switched off (every join
announced to everyone with `user_joined`), which is what every join cost before large rooms:
N(N+1)/2 posts.

    .venv/bin/python benchmarks/join_storm_bench.py [--joins 1000] [--per-interval 50 250 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from parley_testing.functions import import_the_layer

import_the_layer()  # the chat core is the layer's, imported as Lambda imports it

from parley_testing.chat_world import MemoryChatWorld  # noqa: E402

ROOM = "storm"
THRESHOLD = 100  # the template's PresenceThreshold default
POSTS_PER_JOIN_GOAL = 5


class CountingStore:
    """The store, with every call counted by method: a join's store calls are its DynamoDB requests on AWS."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted


def storm(joins: int, per_interval: int, threshold: int) -> dict[str, Any]:
    """`joins` users join one room, `per_interval` of them between two presence batches."""
    world = MemoryChatWorld(presence_threshold=threshold)
    store = CountingStore(world.store)
    world.store = store  # type: ignore[assignment]
    clients = [world.connect(f"u{n:05d}", f"User {n}") for n in range(joins)]
    store.calls.clear()
    frames: Counter[str] = Counter()
    posts_before = world.sender.posts
    started = time.perf_counter()
    batches = 0
    for n, client in enumerate(clients, start=1):
        client.send("join_room", {"roomId": ROOM})
        if n % per_interval == 0 or n == joins:
            world.run_presence()
            batches += 1
            for each in clients[:n]:  # count what was delivered, and keep the inboxes small
                frames.update(frame["type"] for frame in each.take())
    seconds = time.perf_counter() - started
    posts = world.sender.posts - posts_before
    announcements = frames["user_joined"] + frames["presence_update"]
    # chat_history is join_room's route response (not a post); everything else reached its client as a post.
    assert posts == sum(count for kind, count in frames.items() if kind != "chat_history"), (posts, frames)
    return {
        "joins": joins, "per_interval": per_interval, "threshold": threshold, "batches": batches,
        "posts": posts, "frames": dict(frames), "announcement_posts": announcements,
        "posts_per_join_excluding_announcements": (posts - announcements) / joins,
        "posts_per_join": posts / joins,
        "store_calls": dict(store.calls),
        # drain_presence is the presence function's stream read, not a join's call
        "store_calls_per_join": (sum(store.calls.values()) - store.calls["drain_presence"]) / joins,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=1000)
    parser.add_argument("--per-interval", type=int, nargs="+", default=[50, 250, 1000],
                        help="joins arriving within one presence interval (PresenceIntervalMs)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    baseline = storm(args.joins, args.joins, threshold=10**9)
    runs = [storm(args.joins, per, THRESHOLD) for per in args.per_interval]
    print(f"{args.joins} joins into one room; posts counted by frame type (chat_history is the route response)")
    print(f"  every join announced (baseline): {baseline['posts']:,} posts "
          f"({baseline['posts_per_join']:.1f} per join), {baseline['store_calls_per_join']:.1f} store calls per join")
    for run in runs:
        ratio = baseline["posts"] / run["posts"]
        print(f"  threshold {THRESHOLD}, {run['per_interval']} joins per interval: {run['posts']:,} posts ({ratio:.0f}x fewer); "
              f"{run['posts_per_join_excluding_announcements']:.2f} per join answering the joiner + "
              f"{run['announcement_posts']:,} announcements ({run['frames'].get('user_joined', 0):,} user_joined, "
              f"{run['frames'].get('presence_update', 0):,} presence_update in {run['batches']} batches); "
              f"{run['store_calls_per_join']:.1f} store calls per join")
    worst = max(run["posts_per_join_excluding_announcements"] for run in runs)
    print(f"goal: at most {POSTS_PER_JOIN_GOAL} posts per join plus the announcements: "
          f"{'met' if worst <= POSTS_PER_JOIN_GOAL else 'not met'} (worst {worst:.2f})")
    if args.json:
        args.json.write_text(json.dumps({"baseline": baseline, "runs": runs, "goal": POSTS_PER_JOIN_GOAL}, indent=1))


if __name__ == "__main__":
    main()
