"""A nightly run over a large state analyses the inputs the state has never seen while it
triages the others (`batch/ahead.py`): the analyse stage takes those analyses for the very
inputs they were made for, does the others itself, and a worker that dies on one of them costs
that input alone, as in the stage."""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from testdata import DATA

from orthovision_cli.batch import ahead, analyse, output_check, pool, tasks
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.batch.state import StateStore
from orthovision_cli.batch.user import build_user_input
from orthovision_cli.batch.walk import FoundInput, find_inputs
from orthovision_cli.config import ConvertSettings
from orthovision_cli.inputs import reader
from orthovision_cli.types import FileStatus

PHOTOS = sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))[:7]
LABELS = {"modality": "XC"}


def settings_for(src: Path, out: Path) -> ConvertSettings:
    return ConvertSettings(inputs=[src], output=out, use_models=False, labels=LABELS, jobs=2, fsync=False)


@pytest.fixture
def converted(converted_photos: tuple[Path, Path]) -> tuple[Path, Path]:
    return converted_photos


@pytest.fixture
def large_state(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[Any], list[FoundInput]]]:
    """Every state counts as large (the early workers start); what each `Ahead.take` gave."""
    monkeypatch.setattr(output_check, "APART_FROM", 0)
    monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    taken: list[tuple[list[Any], list[FoundInput]]] = []
    real_take = ahead.Ahead.take

    def take(self: ahead.Ahead, part: list[FoundInput]) -> tuple[list[Any], list[FoundInput]]:
        got = real_take(self, part)
        taken.append(got)
        return got

    monkeypatch.setattr(ahead.Ahead, "take", take)
    return taken


def test_never_seen_is_the_inputs_without_a_row(converted: tuple[Path, Path]) -> None:
    src, out = converted
    for p in PHOTOS[4:]:
        shutil.copy(p, src / p.name)
    found = find_inputs([src.absolute()])
    with StateStore(out) as state:
        assert [f.rel for f in ahead.never_seen(found, state, 100)] == [p.name for p in PHOTOS[4:]]
        assert [f.rel for f in ahead.never_seen(found, state, limit=2)] == [p.name for p in PHOTOS[4:6]]


def test_new_inputs_are_analysed_ahead_and_converted(
    converted: tuple[Path, Path], large_state: list[tuple[list[Any], list[FoundInput]]]
) -> None:
    src, out = converted
    for p in PHOTOS[4:]:
        shutil.copy(p, src / p.name)
    summary = run_convert(settings_for(src, out))
    status = {Path(r.path).name: str(r.status) for r in summary.results}
    assert {status[p.name] for p in PHOTOS[4:]} == {FileStatus.CONVERTED}
    assert {status[p.name] for p in PHOTOS[:4]} == {FileStatus.UNCHANGED}
    (done, rest), *_ = large_state
    assert sorted(Path(a.found_path).name for a in done) == [p.name for p in PHOTOS[4:]]
    assert rest == []
    written = [p for p in out.rglob("*.dcm") if not any(x.startswith(".") for x in p.parts)]
    assert len(written) == len(PHOTOS)


def test_an_analysis_is_taken_only_for_the_input_it_was_made_for(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for p in PHOTOS[:3]:
        shutil.copy(p, src / p.name)
    settings = settings_for(src, tmp_path / "out")
    early = pool.early_executor(settings, build_user_input(settings))
    assert early is not None
    try:
        early.begin()
        first, second, third = find_inputs([src.absolute()])
        got = ahead.Ahead(early.workers, tasks.analyse, [first, second])
        # The second changed after the walk saw it (another size): analysed again by the stage.
        changed = FoundInput(second.path_str, second.rel, size=second.size + 1, mtime_ns=second.mtime_ns)
        done, rest = got.take([first, changed, third])
        assert [a.found_path for a in done] == [first.path_str]
        assert done[0].plan_input is not None
        assert rest == [changed, third]
    finally:
        early.drop()


def test_a_worker_that_dies_ahead_costs_that_input_alone(
    converted: tuple[Path, Path],
    large_state: list[tuple[list[Any], list[FoundInput]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src, out = converted
    for p in PHOTOS[4:]:
        shutil.copy(p, src / p.name)
    poison = PHOTOS[5].name
    real_probe = reader.probe

    def probe(path: Path, *args: Any, **kw: Any) -> Any:
        if path.name == poison:
            ctypes.string_at(0)  # SIGSEGV, as a crashing codec would
        return real_probe(path, *args, **kw)

    monkeypatch.setattr(analyse, "probe", probe)  # the workers are forked: they inherit it
    summary = run_convert(settings_for(src, out))
    by_name = {Path(r.path).name: r for r in summary.results}
    assert (str(by_name[poison].status), by_name[poison].reason) == ("failed", "worker-crashed")
    assert {str(by_name[p.name].status) for p in PHOTOS[4:] if p.name != poison} == {FileStatus.CONVERTED}
    assert {str(by_name[p.name].status) for p in PHOTOS[:4]} == {FileStatus.UNCHANGED}
    (done, rest), *_ = large_state
    # The task that died came back with nothing: the stage did its inputs again, alone.
    assert poison in {Path(f.path_str).name for f in rest}
    assert poison not in {Path(a.found_path).name for a in done}
    assert os.path.exists(out)
