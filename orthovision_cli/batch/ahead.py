"""New inputs analysed ahead: while the main process triages a nightly run's inputs against the
state, the workers started before the walk (`pool.early_executor`) analyse the inputs that the
state has never seen.

The triage of a large state takes most of a second (100,000 rows compared, their report lines
made, by the second process of output_check.py), and the workers would idle through it; the
second process names the inputs without a row first (`never_seen`). An input with no row at all is
analysed whatever the triage says (only a row can make an input unchanged, or a poison pill to
skip). Its analysis is the one the analyse stage would make: the same function on the same
`FoundInput` (path, rel, and the size and time the walk saw), in the same workers; the stage
takes it instead of asking again. What did not come back (a worker that died, the run stopped)
is analysed by the stage as usual, where a crash is found out one input at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .crashes import Workers
from .output_check import OutputCheck
from .results import Analysed
from .state import StateStore, from_db
from .walk import FoundInput, FoundList

# Inputs a task: small enough that both workers start at once, large enough that the pool's
# round trip (a fraction of a millisecond of this process) is not paid an input.
CHUNK = 16


def never_seen(
    found: FoundList, state: StateStore, limit: int, check: OutputCheck | None = None
) -> list[FoundInput]:
    """The inputs found (without a problem) that have no row in the state, in the order found,
    at most `limit` (one part's worth: analyses wait here until their part comes). Asked of the
    second process that read the state during the walk (`check`), else of the state here."""
    indices = check.never_seen() if check is not None else None
    if indices is not None:
        return [found[i] for i in indices]
    # The found paths' strings are held already: a set of them costs its table alone, and the
    # state's paths go by one at a time (a million rows would be 100 MB held as a set).
    unseen = set(found.paths())
    for (path,) in state.db.execute("SELECT path FROM inputs"):
        unseen.discard(from_db(path))
    out: list[FoundInput] = []
    for i, path in enumerate(found.paths()):
        if path in unseen and found.usable(i):
            out.append(found[i])
            if len(out) >= limit:
                break
    return out


class Ahead:
    """The analyses of `items` submitted to `workers` now, taken by the analyse stage later."""

    def __init__(
        self, workers: Workers, fn: Callable[[FoundInput], Analysed], items: list[FoundInput]
    ) -> None:
        self._tasks: list[tuple[Future[Any], list[FoundInput]]] = workers.submit_chunks(fn, items, CHUNK)
        self._done: dict[str, tuple[FoundInput, Analysed]] | None = None

    def _gather(self) -> dict[str, tuple[FoundInput, Analysed]]:
        if self._done is None:
            self._done = {}
            for fut, chunk in self._tasks:
                try:
                    results, _ = fut.result()
                except Exception:  # a worker died, or the pool broke: the stage does these
                    continue
                for f, a in zip(chunk, results, strict=True):
                    self._done[f.path_str] = (f, a)
            self._tasks = []
        return self._done

    def take(self, part: list[FoundInput]) -> tuple[list[Analysed], list[FoundInput]]:
        """The analyses done ahead of `part`'s inputs (waited for), and `part`'s other inputs,
        in their order. An analysis is taken only for the very input it was made for (the same
        path, rel, size and time)."""
        done = self._gather()
        if not done:
            return [], part
        taken: list[Analysed] = []
        rest: list[FoundInput] = []
        for f in part:
            got = done.pop(f.path_str, None)
            if got is not None and got[0] == f:
                taken.append(got[1])
            else:
                rest.append(f)
        return taken, rest
