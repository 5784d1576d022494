"""The page's questions about look-alikes: which files a decision could spread to, and which
file to ask about next. Nothing here saves: the page shows the look-alikes as a filmstrip the
person can untick, and only what is left ticked is posted as decisions (of the decided tags).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..decisions import DecisionBook
from ..labels.model import TAGS
from .features import FeatureStore
from .items import ReviewItem
from .similar import NEAR, Profile, look_alikes, proposed_values, settle_order


def profiles(items: Sequence[ReviewItem], store: FeatureStore) -> list[Profile]:
    return [
        Profile(
            it.id,
            it.rel,
            proposed_values(it.labels),
            str(Path(it.input).parent),
            store.device(it.input),
            store.features(it.sha256) if it.sha256 else None,
        )
        for it in items
    ]


def _decided(book: DecisionBook, it: ReviewItem) -> tuple[str, ...]:
    d = book.current(it.input, it.sha256)
    return d.tags if d is not None else ()


def similar(
    items: Sequence[ReviewItem], book: DecisionBook, store: FeatureStore, of: int, tags: Sequence[str]
) -> dict[str, Any]:
    """The look-alikes of file `of` that no one has answered `tags` for, the nearest first."""
    wanted = [t for t in TAGS if t in tags]
    answered = {it.id for it in items if any(t in _decided(book, it) for t in wanted)}
    ids = look_alikes(profiles(items, store), of, exclude=answered, near=NEAR)
    return {"ids": ids, "tags": wanted, **progress(store)}


def next_up(items: Sequence[ReviewItem], book: DecisionBook, store: FeatureStore) -> dict[str, Any]:
    """The undecided files in the order to ask them: the one whose answer would settle the most
    others first, one per group of look-alikes."""
    undecided = [it.id for it in items if not _decided(book, it)]
    order = settle_order(profiles(items, store), undecided, near=NEAR)
    return {"order": [{"id": i, "settles": group} for i, group in order], **progress(store)}


def progress(store: FeatureStore) -> dict[str, Any]:
    f = {"started": store.started, "done": store.done, "total": store.total, "error": store.error}
    return {"features": f}
