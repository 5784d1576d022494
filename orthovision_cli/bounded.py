"""The one bounded executor loop, shared by the batch and the remote classifier.

At most `limit` tasks are in flight, so memory stays bounded however many items there are
(200,000 inputs, or images read lazily for a remote service); results come back in completion
order, each with the item it was made from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(
    pool: Executor,
    fn: Callable[[T], R],
    items: Iterable[T],
    limit: int,
    weight: Callable[[T], int] | None = None,
    budget: int = 0,
) -> Iterator[tuple[T, Future[R]]]:
    """Submit `fn(item)` for each item with at most `limit` in flight; yield (item, its finished
    future) as each finishes. The caller reads `.result()` or `.exception()`.

    With `weight` and `budget`: an item starts only while the weights in flight, its own
    included, stay within `budget` (memory), or when nothing else is in flight; items keep
    their order."""
    limit = max(1, limit)
    it = iter(items)
    pending: dict[Future[R], tuple[T, int]] = {}
    waiting: list[T] = []  # the next item, held back until there is room for it
    in_use = 0

    def fill() -> None:
        nonlocal in_use
        while len(pending) < limit:
            if waiting:
                item = waiting.pop()
            else:
                try:
                    item = next(it)
                except StopIteration:
                    return
            w = weight(item) if weight is not None else 0
            if budget and pending and in_use + w > budget:
                waiting.append(item)
                return
            pending[pool.submit(fn, item)] = (item, w)
            in_use += w

    fill()
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            item, w = pending.pop(fut)
            in_use -= w
            yield item, fut
            fill()
