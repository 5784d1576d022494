"""The analyses of a run as they come back from the workers: made to share what the main
process holds already (`Sharing`), and put back in the order of the inputs (`in_input_order`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import fields, replace
from typing import Any, TypeVar, cast

from .results import Analysed
from .walk import FoundInput

D = TypeVar("D")


class Sharing:
    """One run's analyses as they come back from the workers (each string, path and small
    object a copy of its own), made to hold what this process has already: the walk's path and
    rel objects, one copy of the words every input repeats ("jpeg", "YBR_FULL_422", "option",
    a camera's make) and of equal small facts (a page's, the EXIF's, the patient's, the JPEG's
    components). 1-2 KB less an input while a large batch's analyses wait to be planned
    and written (issue 25)."""

    LIMIT = 4096  # distinct values kept to share: past that, each input keeps its own

    def __init__(self, todo: list[FoundInput]) -> None:
        self.todo = todo
        self.order = {f.path_str: i for i, f in enumerate(todo)}  # the path keeps this string
        self._seen: dict[Any, Any] = {}

    def one(self, value: D, key: Any = None) -> D:
        """An equal value seen before (by `key`, else by itself), or `value` (kept to share
        while there are few)."""
        key = value if key is None else key
        got = self._seen.get(key)
        if got is not None:
            return cast(D, got)
        if len(self._seen) < self.LIMIT:
            self._seen[key] = value
        return value

    def __call__(self, a: Analysed) -> Analysed:
        i = self.order.get(a.found_path)
        if i is None:
            return a
        found = self.todo[i]
        a.found_path = found.path_str
        if a.rel == found.rel:
            a.rel = found.rel
        for item in (a.plan_input, a.review_input):
            if item is None:
                continue
            pr = item.probe
            if item.rel == found.rel and str(pr.path) == found.path_str:
                item.rel = found.rel
            pr.format = sys.intern(pr.format)
            pr.pages = [self.one(_interned(page)) for page in pr.pages]
            pr.exif = self.one(_interned(pr.exif))
            if pr.jpeg is not None:
                pr.jpeg.process = sys.intern(pr.jpeg.process)
                # Never changed once parsed: one list for every JPEG of the same layout.
                comps = pr.jpeg.components
                pr.jpeg.components = self.one(comps, ("components", *map(tuple, comps)))
            item.patient = self.one(item.patient)
            item.labels = replace(item.labels, **{lab.tag: _interned(lab) for lab in item.labels})
        return a


def _interned(obj: D) -> D:
    """`obj` (a dataclass) with its short strings the interpreter's shared copies."""
    changes: dict[str, str] = {}
    for f in fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        if isinstance(v, str) and len(v) <= 64 and sys.intern(v) is not v:
            changes[f.name] = sys.intern(v)
    return replace(obj, **changes) if changes else obj  # type: ignore[type-var]


def in_input_order(stream: Iterable[Analysed], paths: list[str]) -> Iterator[Analysed]:
    """`stream` (in completion order) in the order of `paths`: a result that comes early waits
    for those before it (at most the pool's tasks in flight are held)."""
    index = {p: i for i, p in enumerate(paths)}
    held: dict[int, Analysed] = {}
    following = 0
    for a in stream:
        held[index.get(a.found_path, len(paths) + len(held))] = a
        while following in held:
            yield held.pop(following)
            following += 1
    for i in sorted(held):
        yield held[i]
