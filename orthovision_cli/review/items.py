"""What awaits a person's review in an output folder, and the code tables the page offers.

The list is `OUT/orthovision-review.csv` (written by each `convert`), joined with the state
(`OUT/.orthovision/state.sqlite`, opened read-only, so a running conversion is never blocked)
for each file's path below its root, content hash and proposed labels. A row the state does not
know is not listed (nothing of it is read or previewed), and either file is read only when it is
a regular file inside OUT (safefs).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sqlite3
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..batch.state import from_db
from ..decisions import read_regular
from ..labels.model import TAGS
from ..vocab.ada1100 import all_views
from ..vocab.terms import all_body_parts, all_radiograph_protocols
from .safefs import out_file

REVIEW_NAME = "orthovision-review.csv"
MAX_LIST = 256 << 20  # a review list of ~1M files; a larger one is not ours
STATE_DB = Path(".orthovision") / "state.sqlite"
_TAG_IN_MESSAGE = re.compile(r"\b(" + "|".join(TAGS) + r")=")


@dataclass
class ReviewItem:
    id: int
    input: str
    rel: str
    reason: str
    message: str
    sha256: str = ""
    labels: dict[str, Any] = field(default_factory=dict)  # tag -> Label.as_dict() or None
    size: int = -1  # the state's size and mtime: while they hold, sha256 is the content's
    mtime_ns: int = -1

    @property
    def uncertain(self) -> list[str]:
        """The tags the message names as not sure enough."""
        return sorted(set(_TAG_IN_MESSAGE.findall(self.message)), key=TAGS.index)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "input": self.input,
            "rel": self.rel,
            "reason": self.reason,
            "message": self.message,
            "sha256": self.sha256,
            "labels": self.labels,
            "uncertain": self.uncertain,
        }


def _state_rows(output: Path) -> dict[str, tuple[str, str, str, str, int, int]]:
    """path -> (rel, status, content hash, labels JSON, size, mtime_ns), read-only."""
    db_path = out_file(output, STATE_DB)
    if db_path is None:
        return {}
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return {}
    try:
        rows = db.execute(
            "SELECT path, rel, status, content_hash, labels, size, mtime_ns FROM inputs"
        ).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.close()
    return {
        from_db(r[0]): (from_db(r[1] or ""), r[2] or "", r[3] or "", r[4] or "{}", _int(r[5]), _int(r[6]))
        for r in rows
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1


def load_items(output: Path) -> list[ReviewItem]:
    """The files listed for review whose state still says so, in the CSV's order."""
    path = out_file(output, REVIEW_NAME)
    try:
        raw = read_regular(path, MAX_LIST) if path is not None else None
        # A name that is not UTF-8 read back to the same str.
        text = raw.decode("utf-8", errors="surrogateescape") if raw is not None else ""
    except OSError:
        return []
    state = _state_rows(output)
    items: list[ReviewItem] = []
    for row in csv.DictReader(io.StringIO(text, newline="")):  # quoted newlines in paths kept
        inp = (row.get("input") or "").strip()
        known = state.get(inp)
        if known is None:  # a row convert did not write: its path is not to be read
            continue
        rel, status, sha, labels, size, mtime_ns = known
        if status != "review":  # converted (a decision applied) since the list was written
            continue
        try:
            parsed = json.loads(labels)
        except ValueError:
            parsed = {}
        items.append(
            ReviewItem(
                len(items),
                inp,
                rel or Path(inp).name,
                row.get("reason") or "",
                row.get("message") or "",
                sha,
                parsed,
                size,
                mtime_ns,
            )
        )
    return items


def code_tables() -> dict[str, list[dict[str, str]]]:
    """The pickers' choices: modalities, ADA-1100 views and radiograph protocols, body parts."""
    modalities_csv = resources.files("orthovision_cli.vocab").joinpath("modalities.csv")
    modalities = [
        {"value": r["value"], "meaning": r["meaning"]}
        for r in csv.DictReader(modalities_csv.read_text(encoding="utf-8").splitlines())
    ]
    views = [{"value": v.code, "meaning": v.meaning} for v in all_views()]
    protocols = [{"value": p.keyword, "meaning": p.meaning} for p in all_radiograph_protocols()]
    parts = [{"value": b.keyword, "meaning": b.code.meaning} for b in all_body_parts()]
    orientations = [
        {
            "value": f"{r}{'+flip' if f else ''}",
            "meaning": f"rotate {r}° clockwise{', then mirror' if f else ''}",
        }
        for f in (False, True)
        for r in (0, 90, 180, 270)
    ]
    return {
        "modality": modalities,
        "views": views,
        "radiograph_protocols": protocols,
        "body_part": parts,
        "orientation": orientations,
    }
