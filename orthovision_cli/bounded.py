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
    pool: Executor, fn: Callable[[T], R], items: Iterable[T], limit: int
) -> Iterator[tuple[T, Future[R]]]:
    """Submit `fn(item)` for each item with at most `limit` in flight; yield (item, its finished
    future) as each finishes. The caller reads `.result()` or `.exception()`."""
    limit = max(1, limit)
    it = iter(items)
    pending: dict[Future[R], T] = {}
    for item in it:
        pending[pool.submit(fn, item)] = item
        if len(pending) >= limit:
            break
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            item = pending.pop(fut)
            yield item, fut
            for nxt in it:  # refill one slot
                pending[pool.submit(fn, nxt)] = nxt
                break
