"""What the state keeps of a converted input's plan, as text: `plan.stored_form` (what a later
run plans with), fields at their default left out, and what the input's row holds already (its
path, rel and content hash, which is also its key) not repeated. A few hundred bytes where the
whole plan (JPEG segment table, EXIF, label evidence) took several KB. And the upgrade of a
state of the layout before (whole plans, no plan groups).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from ..dicom.plan import PlanInput, plan_group, stored_form
from . import codec

_PAGE = ("rows", "columns", "samples", "bits", "photometric")


def stored_plan(item: PlanInput, path: str, rel: str, content_hash: str) -> str:
    """The state's text of `item`, whose row holds `path`, `rel`, `content_hash`."""
    plain = codec.to_plain(stored_form(item), defaults=False)
    for name, row_value in (("key", content_hash), ("rel", rel), ("content_hash", content_hash)):
        if plain.get(name) == row_value:
            del plain[name]
    probe = plain["probe"]
    if probe.get("path") == path:
        del probe["path"]
    if probe.get("size") == 0:
        del probe["size"]
    # A page as a list, a label as its value: what `read_plan` reads back as the same.
    probe["pages"] = [[p[k] for k in _PAGE] if tuple(p) == _PAGE else p for p in probe["pages"]]
    labels = plain.get("labels", {})
    for tag, label in labels.items():
        if tuple(label) == ("tag", "value") and label["tag"] == tag:
            labels[tag] = label["value"]
    return json.dumps(plain, separators=(",", ":"))


def read_plan(text: str, path: str, rel: str, content_hash: str, *, whole: bool = False) -> PlanInput:
    """A plan `stored_plan` wrote (or, `whole`, a whole plan of an older layout, read without the
    parts `stored_form` drops: JPEG segment table, ICC profile, label evidence) with its row's
    values; raises `codec.CodecError` when it does not decode into a plan."""
    try:
        plain = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise codec.CodecError(f"not JSON: {exc}") from exc
    if not isinstance(plain, dict) or not isinstance(plain.get("probe"), dict):
        raise codec.CodecError("not a stored plan")
    for name, row_value in (("key", content_hash), ("rel", rel), ("content_hash", content_hash)):
        plain.setdefault(name, row_value)
    probe = plain["probe"]
    probe.setdefault("path", path)
    probe.setdefault("size", 0)
    if isinstance(probe.get("pages"), list):
        probe["pages"] = [
            dict(zip(_PAGE, p, strict=True)) if isinstance(p, list) and len(p) == len(_PAGE) else p
            for p in probe["pages"]
        ]
    labels = plain.get("labels")
    if isinstance(labels, dict):
        for tag, label in labels.items():
            if label is None or isinstance(label, str):
                labels[tag] = {"tag": tag, "value": label}
    if whole:  # decoding them is most of the time an upgrade takes
        probe.pop("jpeg", None)
        probe.pop("icc_profile", None)
        for label in (labels or {}).values():
            if isinstance(label, dict):
                for name in ("codes", "detail", "meaning"):
                    label.pop(name, None)
    item: PlanInput = codec.from_plain(plain, PlanInput)
    return item


def upgrade(db: sqlite3.Connection, progress: Callable[[int, int], None] | None = None) -> None:
    """A state of the layout before plan groups (issue 25): the column added, and each readable
    plan reduced to its stored form with its group, in one transaction (a crash leaves the old
    layout, upgraded again next time). A plan that cannot be read stays as it is, without a
    group: a run that would number after it warns, as before. `progress(done, total)` hears of
    each thousand plans (minutes at a million: the user sees it move)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(inputs)")}
    if "plan_group" not in columns:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("ALTER TABLE inputs ADD COLUMN plan_group TEXT")
            (total,) = db.execute("SELECT COUNT(*) FROM inputs WHERE typeof(plan_input) = 'text'").fetchone()
            done = 0
            if progress is not None:
                progress(done, total)
            last = 0
            while True:  # in batches by rowid: no update under an open cursor
                rows = db.execute(
                    "SELECT rowid, path, rel, content_hash, plan_input FROM inputs"
                    " WHERE rowid > ? AND typeof(plan_input) = 'text' ORDER BY rowid LIMIT 1000",
                    (last,),
                ).fetchall()
                if not rows:
                    break
                for rowid, path, rel, content_hash, text in rows:
                    last = rowid
                    path, rel, content_hash = _text(path), _text(rel), content_hash or ""
                    try:
                        item = read_plan(text, path, rel, content_hash, whole=True)
                    except codec.CodecError:
                        continue
                    db.execute(
                        "UPDATE inputs SET plan_input=?, plan_group=? WHERE rowid=?",
                        (stored_plan(item, path, rel, content_hash), plan_group(item), rowid),
                    )
                done += len(rows)
                if progress is not None:
                    progress(done, total)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # a full disk may have ended it already
                db.execute("ROLLBACK")
            raise
        # The plans take a third of the room they took: give it back (once; a full disk only
        # leaves the file as large as it was).
        with contextlib.suppress(sqlite3.Error):
            db.execute("VACUUM")
    db.execute("CREATE INDEX IF NOT EXISTS inputs_group ON inputs(plan_group)")


def _text(value: Any) -> str:
    """A path or rel as the state's `from_db` reads it (a name that is not UTF-8 is a BLOB)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
