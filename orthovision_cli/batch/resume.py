"""What a re-run must do: the state says which inputs are unchanged, which content was converted
already (a touched or moved file, a duplicate), and which earlier inputs new ones are numbered
after. Only the main process reads and writes the state.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterable
from pathlib import Path

from ..config import ConvertSettings
from ..defaults import DEFAULT_VISIT_GAP
from ..dicom.plan import PlanInput, plan_group
from ..types import FileStatus
from .codec import CodecError
from .output_check import OutputCheck, all_there, output_list, same_file, unchanged_bytes
from .results import Analysed, FileResult, ReportLine, ResultLog
from .state import InputRecord, StateStore, shared_secret
from .stored_plans import read_plan
from .walk import FoundInput, FoundList


def settings_key(settings: ConvertSettings) -> str:
    """What changes the DICOM written for an input: a change means re-convert."""
    manifest_hash = ""
    if settings.manifest is not None:
        try:
            manifest_hash = hashlib.sha256(settings.manifest.read_bytes()).hexdigest()
        except OSError:
            manifest_hash = "unreadable"
    pack_id = ""
    if settings.use_models:
        pack_id = str(settings.models or "default")
        # packs.py is light, but its package (the classifier: numpy, onnxruntime) is not.
        from ..labels.local.packs import default_pack_path

        manifest_file = (settings.models or default_pack_path()) / "manifest.json"
        if manifest_file.exists():
            pack_id += hashlib.sha256(manifest_file.read_bytes()).hexdigest()
    payload = {
        "patient": settings.patient,
        "labels": settings.labels,
        "manifest": manifest_hash,
        "template": settings.path_template,
        "names": settings.name_template,
        "models": pack_id,
        "remote": settings.remote,
        "remote_tags": list(settings.remote_options.tags),
        "min": settings.min_confidence,
        "uncertain": str(settings.on_uncertain),
    }
    if settings.visit_gap != DEFAULT_VISIT_GAP:  # other visits are other studies (the default: as before)
        payload["visit_gap"] = settings.visit_gap
    if settings.uid_secret is not None:  # another key gives other UIDs: convert again
        payload["uid_secret"] = hashlib.sha256(shared_secret(settings.uid_secret)).hexdigest()
    if settings.radiographs:  # only when given: the keys of earlier runs stand
        payload["radiographs"] = settings.radiographs
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def triage(
    found: FoundList,
    state: StateStore,
    key: str,
    force: bool,
    output: Path,
    log: ResultLog,
    check: OutputCheck | None = None,
) -> FoundList:
    """The inputs to analyse; the result of each input unchanged since it was converted goes to
    `log`, with its labels. Asked of the second process that read the state during the walk
    (`check`, output_check.py), else done here in one pass over the state's rows (issue 25: a
    nightly run over 100,000 converted inputs reads each row once, and makes a line only for
    those that stay). An input whose row holds a plan of an older version (a pickle) is analysed
    again, so its plan is stored anew: it is never unpickled, and never skipped."""
    if force:
        return found
    answer = check.unchanged() if check is not None else None
    if answer is None:
        same = _triage_here(found, state, key, output, log)
        return found.where(lambda p: p not in same) if same else found
    indices, rels, lengths, twins = answer
    log.adopt(rels, lengths)  # the lines the child wrote into the log's file
    stay = set(indices)
    for i in twins:
        if (dup := _duplicate(found, i, state, key, output)) is not None:
            log.append(dup)
            stay.add(i)
    return found.take(i for i in range(len(found)) if i not in stay) if stay else found


def _triage_here(found: FoundList, state: StateStore, key: str, output: Path, log: ResultLog) -> set[str]:
    """`triage` without the second process: the paths of the inputs that stay."""
    # path -> its index in `found`: an input is made from the list only when a row speaks of it
    wanted = {p: i for i, p in enumerate(found.paths()) if found.usable(i)}
    same: set[str] = set()
    rels: list[str] = []  # unchanged inputs' report lines, handed to the log a batch at a time
    lines: list[bytes] = []
    base = os.path.join(output, "")  # ends in a separator: an output's relative path goes after it
    for path, status, settings, size, mtime_ns, outputs, legacy, content_hash, labels in state.done_rows():
        i = wanted.get(path)
        if i is None:
            continue
        if status == "unchanged":
            dup = _duplicate(found, i, state, key, output)
            if dup is not None:
                log.append(dup)
                same.add(path)
        elif (
            status == "done"
            and settings == key
            and not legacy
            and same_file(path, found.stat_of(i), size, mtime_ns)
            and all_there(base, output_list(outputs))
        ):
            rel = found.rel_of(i)
            rels.append(rel)
            lines.append(unchanged_bytes(path, rel, content_hash, outputs, labels))
            same.add(path)
            if len(lines) >= 4096:
                log.append_quiet(rels, lines)
                rels, lines = [], []
    log.append_quiet(rels, lines)
    return same


def _duplicate(found: FoundList, i: int, state: StateStore, key: str, output: Path) -> FileResult | None:
    """The result of input `i`, recorded as a copy of converted content, where it still is one."""
    rec = state.get(found.paths()[i])  # a copy of converted content: few
    return None if rec is None else _still_duplicate(found, i, rec, state, key, output)


def unchanged_line(path: str, rel: str, content_hash: str, outputs_json: str, labels_json: str) -> ReportLine:
    """The report line of an input unchanged since it was converted (`outputs_json`,
    `labels_json`: the state's ASCII JSON text)."""
    return ReportLine(
        rel, str(FileStatus.UNCHANGED), unchanged_bytes(path, rel, content_hash, outputs_json, labels_json)
    )


def _outputs_exist(output: Path, outputs: list[str]) -> bool:
    return all_there(os.path.join(output, ""), outputs)


def _still_duplicate(
    found: FoundList, i: int, rec: InputRecord, state: StateStore, key: str, output: Path
) -> FileResult | None:
    """A file recorded as a copy of converted content is not read again while it is the same
    file and that content's conversion still stands (its input and its outputs are there);
    otherwise it is analysed anew (and converted if it is no longer a copy)."""
    if rec.settings != key or not same_file(found.paths()[i], found.stat_of(i), rec.size, rec.mtime_ns):
        return None
    f = found[i]
    orig = state.done_by_hash(rec.content_hash, key)
    if orig is None or orig.path == rec.path or not Path(orig.path).exists():
        return None
    if not _outputs_exist(output, orig.outputs):
        return None
    return FileResult(
        f.path_str,
        f.rel,
        FileStatus.UNCHANGED,
        "duplicate",
        f"same content as {orig.rel}, converted already",
        orig.outputs,
        orig.labels,
        rec.content_hash,
    )


def held_results(held: Iterable[FoundInput], state: StateStore) -> list[FileResult]:
    """Inputs outside `only` that wait for a person keep their place in the review list."""
    out = []
    for f in held:
        rec = state.get(f.path_str)
        if rec is not None and rec.status == "review":
            out.append(
                FileResult(
                    f.path_str,
                    f.rel,
                    FileStatus.REVIEW,
                    rec.reason,
                    rec.message,
                    labels=rec.labels,
                    content_hash=rec.content_hash,
                )
            )
    return out


def dedupe(
    ok: list[Analysed],
    state: StateStore,
    key: str,
    results: list[FileResult],
    force: bool,
    record: bool = True,
    seen: dict[str, str] | None = None,
) -> list[Analysed]:
    """An input whose content was converted already (touched, or moved) is not converted twice.
    With `record` (not --dry-run), a copy of converted content gets its own row, so that the
    next run does not read it again. `seen` (content hash -> rel) carries the run's earlier
    parts under --force, where the state's rows do not count; without --force the state knows
    them."""
    out = []
    carried = {} if seen is None else seen
    mine: dict[str, str] = {}  # this part's
    for a in ok:
        assert a.plan_input is not None
        h = a.plan_input.content_hash
        prev = None if force else state.done_by_hash(h, key)
        if prev is not None and Path(prev.path).exists() and prev.path != a.found_path:
            # Its own row: the next run does not read it again (a duplicate's row points at the
            # original's outputs and carries no plan).
            message = f"same content as {prev.rel}, converted already"
            results.append(_same_content(state, key, a, prev, "duplicate", message, record))
            continue
        if prev is not None and prev.path == a.found_path and _outputs_exist(state.output, prev.outputs):
            # Touched, or a row whose plan was a pickle: the plan is stored anew (as JSON).
            results.append(_same_content(state, key, a, prev, "touched", "content unchanged", record))
            continue
        first = mine.get(h) or carried.get(h)
        if first is not None:
            results.append(
                FileResult(
                    a.found_path,
                    a.rel,
                    FileStatus.UNCHANGED,
                    "duplicate",
                    f"same content as {first} in this batch",
                    [],
                    {},
                    h,
                )
            )
            continue
        mine[h] = a.rel
        if force:  # without --force the state's row of `a` says it to later parts
            carried[h] = a.rel
        out.append(a)
    return out


def _same_content(
    state: StateStore,
    key: str,
    a: Analysed,
    prev: InputRecord,
    reason: str,
    message: str,
    record: bool,
) -> FileResult:
    """The result of an input whose content `prev` converted already, and (with `record`) its
    row: `done` with its plan when it is `prev`'s own file (touched), else an `unchanged`
    duplicate."""
    assert a.plan_input is not None
    h = a.plan_input.content_hash
    touched = prev.path == a.found_path
    if record:
        state.put(
            path=a.found_path,
            rel=a.rel,
            size=a.size,
            mtime_ns=a.mtime_ns,
            content_hash=h,
            settings=key,
            status="done" if touched else str(FileStatus.UNCHANGED),
            reason="" if touched else reason,
            message="" if touched else message,
            outputs=prev.outputs,
            labels=prev.labels,
            plan_input=a.plan_input if touched else None,
        )
    return FileResult(
        a.found_path, a.rel, FileStatus.UNCHANGED, reason, message, prev.outputs, prev.labels, h
    )


def earlier_inputs(
    state: StateStore, new: list[Analysed], unchanged: Collection[str]
) -> tuple[list[PlanInput], list[str]]:
    """Inputs converted by earlier runs (and earlier parts of this one) that new ones are
    planned with: those of the new inputs' plan groups (`plan_group`: nothing outside one can
    share a study with it), read by the state's index, so that the new join their studies and
    series and continue their numbering; only those still found (`unchanged`: the paths found
    that this run does not convert; what this run converted was found). And a warning for each
    row whose plan cannot be read (new inputs may then be numbered as if it were not there:
    `--force` plans everything anew)."""
    now = {a.found_path for a in new}
    groups = {plan_group(a.plan_input) for a in new if a.plan_input is not None}
    out: list[PlanInput] = []
    warnings: list[str] = []
    for path, rel, content_hash, stored, run in state.done_in_groups(groups):
        if path in now or not (run == state.run_id or path in unchanged):
            continue
        item = load_plan(stored, path, rel, content_hash)
        if isinstance(item, str):
            warnings.append(f"{rel}: {item}")
            continue
        out.append(item)
    return out, warnings


def load_plan(stored: str | bytes | None, path: str, rel: str, content_hash: str) -> PlanInput | str:
    """The stored plan of a converted input (its row's path, rel, content hash), or why it
    cannot be used."""
    if stored is None or isinstance(stored, bytes):  # a pickle of an older version: never read
        return (
            "its stored plan is from an older version; numbering may restart "
            "(run with --force to plan everything anew)"
        )
    try:
        return read_plan(stored, path, rel, content_hash)
    except CodecError as exc:
        return f"its stored plan cannot be read ({exc}); run with --force to plan everything anew"
