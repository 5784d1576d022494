"""Records completeness (issue 26): the views a visit should have (a protocol TOML file; the
usual orthodontic records set ships as `records-default.toml`), and per visit of a run what is
present, missing and duplicated.

A visit is a study holding photographs (XC); its views are the photographs' ADA-1100 protocols.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..vocab import ada1100
from .plan import InstancePlan

DEFAULT_RECORDS = Path(__file__).with_name("records-default.toml")
PROGRESS_RECORDS = Path(__file__).with_name("records-progress.toml")
# `--records NAME`: the sets that ship (a file of that name in the working folder wins).
BUILTIN = {"records": DEFAULT_RECORDS, "progress": PROGRESS_RECORDS}


@dataclass(frozen=True)
class RecordsView:
    name: str
    protocols: frozenset[str]  # any one of these ADA-1100 codes is the view


@dataclass(frozen=True)
class RecordsProtocol:
    name: str
    views: tuple[RecordsView, ...]


def load_records(path: Path | None = None) -> RecordsProtocol:
    """The protocol file (`--records`; none: the default set); a bad file is a usage error."""
    path = path or DEFAULT_RECORDS
    if not path.exists() and str(path) in BUILTIN:
        path = BUILTIN[str(path)]
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"--records {path}: {exc}") from exc
    views = []
    raw = data.get("views")
    if not isinstance(raw, list) or not raw:
        raise UsageError(f"--records {path}: no [[views]] table")
    for i, entry in enumerate(raw, start=1):
        name = entry.get("name") if isinstance(entry, dict) else None
        codes = entry.get("protocols") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or not isinstance(codes, list) or not codes:
            raise UsageError(f"--records {path}: view {i} needs a name and a list of protocols")
        for code in codes:
            try:
                ada1100.get_view(str(code))
            except KeyError:
                raise UsageError(
                    f"--records {path}: view {name!r}: {code!r} is not an ADA-1100 view"
                ) from None
        views.append(RecordsView(name, frozenset(str(c).upper() for c in codes)))
    return RecordsProtocol(str(data.get("name", path.stem)), tuple(views))


def progress_records(path: Path | None) -> RecordsProtocol | None:
    """The set a progress visit is checked against: the shipped one, unless --records names
    the set for every visit."""
    return load_records(PROGRESS_RECORDS) if path is None else None


def visits(
    plans: Sequence[InstancePlan], protocol: RecordsProtocol, progress: RecordsProtocol | None = None
) -> list[dict[str, Any]]:
    """One entry per study holding photographs, in order of first capture; a visit whose
    timepoint is PROGRESS is checked against `progress` where given (no --records)."""
    studies: dict[str, list[InstancePlan]] = defaultdict(list)
    for p in plans:
        if p.modality == "XC":
            studies[p.study_uid].append(p)
    out = []
    for uid, members in studies.items():
        times = sorted(p.acquired for p in members if p.acquired is not None)
        checked = progress if progress is not None and members[0].timepoint == "PROGRESS" else protocol
        counts = {v.name: 0 for v in checked.views}
        for p in members:
            code = (p.input.labels.value("protocol") or "").upper()
            for view in checked.views:
                if code in view.protocols:
                    counts[view.name] += 1
        out.append(
            {
                "study_uid": uid,
                "patient_id": next(
                    (p.input.patient.patient_id for p in members if p.input.patient.patient_id), ""
                ),
                "first": times[0].isoformat() if times else "",
                "last": times[-1].isoformat() if times else "",
                "photos": len(members),
                "records": checked.name,
                "present": [n for n, c in counts.items() if c],
                "missing": [n for n, c in counts.items() if not c],
                "duplicated": [n for n, c in counts.items() if c > 1],
            }
        )
    return sorted(out, key=lambda v: (v["first"], v["study_uid"]))


def incomplete_line(visit: dict[str, Any]) -> str:
    """The summary's line for a visit with a view missing."""
    who = visit["patient_id"] or "no Patient ID"
    when = visit["first"].replace("T", " ")[:16] or "no capture time"
    n = visit["photos"]
    return f"visit {when} ({who}, {n} photo{'' if n == 1 else 's'}): missing {', '.join(visit['missing'])}"
