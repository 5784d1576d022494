"""A worker process that dies (a native crash, an out-of-memory kill) fails its one file as
`worker-crashed`; the batch goes on with a new pool, and later runs skip the file unless --force.
The crash is real: the patched reader dereferences a null pointer (SIGSEGV) in the forked worker.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from corpus import make_corpus, outputs
from PIL import Image

from orthovision_cli.batch import analyse, write
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.inputs import reader

LABELS = {"modality": "XC", "body_part": "HEAD"}


def _segfault() -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a crashing codec would


@pytest.fixture
def poisoned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    src = tmp_path / "in"
    good = make_corpus(src, 4, clutter=False)
    jpg = next(p for p in good if p.suffix == ".jpg")
    with Image.open(jpg) as im:
        im.save(src / "poison-write.jpg", quality=70)  # a content of its own (no duplicate)
        im.rotate(180).save(src / "poison-probe.png")
    calls = tmp_path / "calls.txt"
    real_probe, real_pixels = reader.probe, reader.load_pixels

    def probe(path: Path, *args: Any, **kw: Any) -> Any:
        if path.name == "poison-probe.png":
            with calls.open("a") as f:
                f.write("probe\n")
            _segfault()
        return real_probe(path, *args, **kw)

    def load_pixels(pr: Any, *args: Any, **kw: Any) -> Any:
        if pr.path.name == "poison-write.jpg":
            with calls.open("a") as f:
                f.write("write\n")
            _segfault()
        return real_pixels(pr, *args, **kw)

    # The workers are forked: they inherit the patched functions.
    monkeypatch.setattr(analyse, "probe", probe)
    monkeypatch.setattr(write, "load_pixels", load_pixels)
    return src, calls


# --jobs 1 too: its one worker is a process of its own, so a crash is contained all the same.
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_crashing_file_fails_alone_and_is_not_retried(
    poisoned: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    jobs: int,
) -> None:
    src, calls = poisoned
    out = tmp_path / "out"
    settings = ConvertSettings(
        inputs=[src], output=out, use_models=False, jobs=jobs, labels=LABELS, fsync=False
    )
    first = run_convert(settings)
    by_name = {Path(r.path).name: r for r in first.results}
    for name in ("poison-probe.png", "poison-write.jpg"):
        r = by_name[name]
        assert (r.status, r.reason, r.outputs) == ("failed", "worker-crashed", []), r
        assert "worker process died" in r.message and "\n" not in r.message
    assert first.counts == {"converted": 4, "failed": 2}
    assert first.exit_code == ExitCode.SOME_FAILED
    assert len(outputs(out)) == 4
    assert not list(out.rglob(".orthovision-tmp-*"))
    tries = calls.read_text().splitlines()
    assert tries.count("probe") == 2 and tries.count("write") == 2  # in the pool, then alone

    again = run_convert(settings)  # the files are remembered: not tried, so no crash at all
    assert calls.read_text().splitlines() == tries
    by_name = {Path(r.path).name: r for r in again.results}
    assert by_name["poison-write.jpg"].reason == "worker-crashed"
    assert "skipped" in by_name["poison-write.jpg"].message
    assert again.counts == {"unchanged": 4, "failed": 2}

    monkeypatch.undo()  # the "codec" is fixed: --force tries them again
    forced = run_convert(
        ConvertSettings(
            inputs=[src], output=out, use_models=False, jobs=jobs, labels=LABELS, force=True, fsync=False
        )
    )
    assert forced.exit_code == ExitCode.OK, [r.as_dict() for r in forced.results]
    assert len(outputs(out)) == 6


def test_the_memory_budget_limits_each_worker(tmp_path: Path) -> None:
    code = (
        "from orthovision_cli.batch import crashes\n"
        "import numpy as np\n"
        "crashes.MIN_ALLOWANCE = 0\n"
        "crashes.limit_memory(200 << 20)\n"
        "a = np.ones(100 << 20, np.uint8)\n"  # within the budget
        "del a\n"
        "try:\n"
        "    np.ones(400 << 20, np.uint8)\n"
        "except MemoryError:\n"
        "    print('refused')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "refused", run.stderr


# --- items in groups (issue 25): one task carries several small items -----------------------


def _square_or_crash(x: int) -> int:
    if x == 77:
        _segfault()
    return x * x


def test_a_crash_inside_a_group_fails_only_its_item() -> None:
    """200 quick items go to the two workers in groups once their time is measured; the item
    that kills its worker is found by doing its group again item by item, each alone: every
    other item's result comes back once, the culprit's as crashed."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from orthovision_cli.batch.crashes import Workers

    ctx = multiprocessing.get_context("fork")
    sizes: list[int] = []
    real_submit = ProcessPoolExecutor.submit

    def pool(n: int) -> ProcessPoolExecutor:
        p = ProcessPoolExecutor(n, mp_context=ctx)

        def submit(fn: Any, *args: Any, **kw: Any) -> Any:
            if len(args) == 2 and isinstance(args[1], list):
                sizes.append(len(args[1]))  # a group's size
            return real_submit(p, fn, *args, **kw)

        p.submit = submit  # type: ignore[method-assign,assignment]
        return p

    workers = Workers(pool, 2)
    try:
        got = list(workers.map(_square_or_crash, range(200), 4, lambda item, why: ("crashed", item)))
    finally:
        workers.shutdown()
    assert sorted(r for r in got if isinstance(r, int)) == sorted(x * x for x in range(200) if x != 77)
    assert [r for r in got if not isinstance(r, int)] == [("crashed", 77)]
    assert max(sizes) > 1  # groups were sent
    assert workers.crashes == 1 and workers.broken >= 1


def test_group_sizes() -> None:
    from orthovision_cli.batch.crashes import CHUNK_ITEMS, chunk_size

    assert chunk_size(None, 1000, 2) == 1  # nothing measured yet: one at a time
    assert chunk_size(0.002, 1000, 2) == 50  # 100 ms of work
    assert chunk_size(0.0001, 1000, 2) == CHUNK_ITEMS
    assert chunk_size(0.5, 1000, 2) == 1  # slow items: one a task
    assert chunk_size(0.0001, 20, 2) == 5  # two tasks a worker of what is left
    assert chunk_size(0.0, 3, 2) == 1
