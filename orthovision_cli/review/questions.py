"""Batch questions on the review page: "Are the radiographs in <folder> scanned films or
digital?", asked once per source folder instead of once per file (issue 20).

A file awaiting review whose modality waits only for film or digital (the classifier's
`film_or_digital` entry, `labels.facts`) belongs to its source folder's question. The answer is
kept in `OUT/orthovision-settings.toml` (`answers.py`) and applies on every later run; a file it
settles (no other tag uncertain) is converted by the next `convert`, `watch` or
`orthovision review OUT --apply`, without a decision of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..answers import Answer, AnswerBook, source_folder
from ..decisions import load as load_decisions
from ..decisions import read_regular
from ..defaults import DEFAULT_MIN_CONFIDENCE
from ..errors import UsageError
from ..labels.facts import apply_radiographs, film_or_digital, parse_radiographs
from ..labels.model import Label, Labels
from ..labels.policy import uncertain_tags
from .apply import SETTINGS_FILE
from .items import ReviewItem, load_items


@dataclass(frozen=True)
class Covered:
    """A file awaiting review that its folder's film-or-digital answer covers."""

    item: ReviewItem
    folder: str


def min_confidence(output: Path) -> float:
    """The last convert's --min-confidence (what decides "settled"), else the default."""
    try:
        # A regular file only, never blocking (a FIFO in its place must not hang the page).
        raw = read_regular(output / SETTINGS_FILE, 16 << 20)
        saved = json.loads(raw.decode("utf-8")) if raw is not None else {}
        value = float(saved.get("min_confidence", DEFAULT_MIN_CONFIDENCE))
    except (OSError, ValueError, TypeError, AttributeError):
        return DEFAULT_MIN_CONFIDENCE
    return value if 0.0 <= value <= 1.0 else DEFAULT_MIN_CONFIDENCE


def _labels(item: ReviewItem) -> Labels:
    out = Labels()
    for tag, d in item.labels.items():
        if isinstance(d, dict) and tag in ("modality", "protocol", "body_part", "orientation"):
            try:
                out = out.with_label(
                    Label(
                        tag,  # type: ignore[arg-type]
                        d.get("value"),
                        float(d.get("confidence", 0.0)),
                        str(d.get("source", "")),
                        detail=d.get("detail") or {},
                    )
                )
            except (TypeError, ValueError):
                continue
    return out


def waiting(items: list[ReviewItem]) -> list[Covered]:
    """The files whose modality waits for film or digital, with their source folder."""
    out = []
    for it in items:
        lab = _labels(it).get("modality")
        entry = film_or_digital(lab)
        if lab is None or entry is None or lab.detail.get("acquisition") != "unknown":
            continue
        if "radiographs" in lab.detail:  # a fact was applied already
            continue
        out.append(Covered(it, source_folder(it.input, it.rel)))
    return out


def settles(item: ReviewItem, acquisition: str, threshold: float) -> bool:
    """Whether the answer leaves nothing of this file uncertain (it converts on the next run)."""
    labels = apply_radiographs(_labels(item), acquisition, "person")
    return not uncertain_tags(labels, threshold)


def summary(items: list[ReviewItem], book: AnswerBook, threshold: float) -> dict[str, Any]:
    """The open questions (one per source folder) and the answers given, with their counts."""
    open_: dict[str, dict[str, Any]] = {}
    answered: dict[str, dict[str, Any]] = {}
    settled: dict[str, str] = {}  # input -> folder answered
    for c in waiting(items):
        answer = book.radiographs_for(c.item.input)
        if answer is None:
            q = open_.setdefault(c.folder, {"folder": c.folder, "files": 0, "would_settle": 0})
            q["files"] += 1
            q["would_settle"] += settles(c.item, "film", threshold)
            continue
        a = answered.setdefault(
            answer.folder,
            {
                "folder": answer.folder,
                "acquisition": answer.acquisition,
                "answered_by": answer.answered_by,
                "answered_at": answer.answered_at,
                "files": 0,
                "settled": 0,
            },
        )
        a["files"] += 1
        if settles(c.item, answer.acquisition, threshold):
            a["settled"] += 1
            settled[c.item.input] = answer.folder
    return {
        "questions": sorted(open_.values(), key=lambda q: q["folder"]),
        "answered": sorted(answered.values(), key=lambda a: a["folder"]),
        "settled": settled,
    }


def settled_inputs(items: list[ReviewItem], book: AnswerBook, threshold: float) -> set[str]:
    """Files awaiting review that an answer settles: `review --apply` converts them."""
    return set(summary(items, book, threshold)["settled"])


def applicable_inputs(output: Path) -> set[str]:
    """What `review OUT --apply` converts: the decided files and those an answer settles."""
    settled = settled_inputs(load_items(output), AnswerBook(output), min_confidence(output))
    return set(load_decisions(output)) | settled


def answer(payload: Any, items: list[ReviewItem], book: AnswerBook, who: str) -> Answer:
    """Save `{"folder": ..., "acquisition": "film"|"digital"}` for a folder the page asked about."""
    if not isinstance(payload, dict):
        raise UsageError('expected {"folder": ..., "acquisition": "film" or "digital"}')
    folder, acquisition = payload.get("folder"), payload.get("acquisition")
    if not isinstance(folder, str) or not isinstance(acquisition, str):
        raise UsageError('expected {"folder": ..., "acquisition": "film" or "digital"}')
    if folder not in {c.folder for c in waiting(items)}:
        raise UsageError(f"no file of {folder} waits for film or digital")
    return book.save(Answer(folder, parse_radiographs(acquisition, "acquisition"), who))
