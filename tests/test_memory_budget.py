"""--max-memory: sizes, the estimates, and the bounded executor that keeps the images in flight
within the budget."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from make_inputs import exif_block, face
from typer.testing import CliRunner

from orthovision_cli.bounded import bounded_map
from orthovision_cli.cli import app
from orthovision_cli.errors import ExitCode, UsageError
from orthovision_cli.inputs import turbojpeg
from orthovision_cli.inputs.reader import probe
from orthovision_cli.memory import (
    SMALL_TASK,
    WORKER_HEAP_KEEP,
    default_budget,
    heap_keep,
    parse_size,
    release_free_heap,
    write_estimate,
)
from orthovision_cli.types import Orientation


def test_parse_size() -> None:
    assert parse_size("4G") == 4 << 30
    assert parse_size("512m") == 512 << 20
    assert parse_size("1.5GiB") == 3 << 29
    assert parse_size("800MB") == 800 << 20
    assert parse_size(12345) == 12345
    for bad in ("", "lots", "-1G", "0"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_default_budget_is_half_the_available_memory() -> None:
    from orthovision_cli.memory import FLOOR, available_bytes

    # What is available moves while other processes run: read it on both sides of the budget,
    # with room for what moved between the reads.
    before = available_bytes()
    budget = default_budget()
    after = available_bytes()
    low, high = sorted((before, after))
    slack = 64 << 20
    assert max(FLOOR, low // 2) - slack <= budget <= max(FLOOR, high // 2) + slack


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(st.integers(1, 100), min_size=1, max_size=25),
    budget=st.integers(1, 150),
    limit=st.integers(1, 6),
)
def test_in_flight_weights_stay_within_the_budget(weights: list[int], budget: int, limit: int) -> None:
    lock = threading.Lock()
    in_flight: list[int] = []
    peaks: list[tuple[int, int]] = []  # (weight in flight, tasks in flight) at each start

    def work(w: int) -> int:
        with lock:
            in_flight.append(w)
            peaks.append((sum(in_flight), len(in_flight)))
        time.sleep(0.002)
        with lock:
            in_flight.remove(w)
        return w

    with ThreadPoolExecutor(4) as pool:
        done = [fut.result() for _, fut in bounded_map(pool, work, weights, limit, lambda w: w, budget)]
    assert sorted(done) == sorted(weights)  # every item, once
    for total, count in peaks:
        assert count <= limit
        assert total <= budget or count == 1  # over budget only alone


def _jpeg(tmp: Path, size: tuple[int, int], orientation: int) -> Path:
    buf = io.BytesIO()
    face(size).save(buf, "JPEG", quality=90, exif=exif_block(orientation))
    path = tmp / f"{size[0]}x{size[1]}-{orientation}.jpg"
    path.write_bytes(buf.getvalue())
    return path


def test_estimates_follow_the_work(tmp_path: Path) -> None:
    upright = probe(_jpeg(tmp_path, (320, 240), 1))
    assert write_estimate(upright, Orientation()) == SMALL_TASK  # streamed by the kernel
    turned = write_estimate(upright, Orientation(90))
    # DCT-domain turn: 320x240 4:2:0 holds 1200 luma + 600 chroma blocks of 128 bytes.
    assert turned >= SMALL_TASK + 1800 * 128
    import tifffile

    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, np.zeros((300, 200), np.uint16))
    assert write_estimate(probe(path), Orientation()) >= 3 * 300 * 200 * 2


def test_cli_max_memory(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _jpeg(src, (320, 240), 6)
    _jpeg(src, (320, 240), 1)
    base = ["convert", str(src), "--no-models", "--modality", "XC", "--body-part", "HEAD", "--jobs", "2"]
    res = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "bad"), "--max-memory", "lots"])
    assert res.exit_code == ExitCode.USAGE
    assert "--max-memory" in res.output
    # A budget smaller than any image: each runs alone, all are converted.
    res = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "out"), "--max-memory", "1K", "--quiet"])
    assert res.exit_code == ExitCode.OK, res.output
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_pages_go_back_to_the_system() -> None:
    """What `orthovision serve` does every few seconds: after a burst of large bodies its RSS
    comes back down instead of staying at the peak."""

    def rss_mib() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20

    blobs = [bytes(8192) for _ in range(25_000)]  # ~200 MiB through malloc
    keep = blobs[::64]  # a few survivors: the heap cannot just shrink from its top
    del blobs
    before = rss_mib()
    assert release_free_heap()
    after = rss_mib()
    assert len(keep) == 391
    assert before - after > 100, (before, after)


# In a fresh interpreter: two lossless turns of the same large JPEG, and the page faults of the
# second. Its luma coefficients (38 MB) are over glibc's largest mmap threshold (32 MB), so by
# default each turn maps them afresh.
TURNS = """
import io, json, resource, sys
import numpy as np
from PIL import Image
from orthovision_cli.inputs import turbojpeg
from orthovision_cli.memory import keep_freed_heap
if sys.argv[1] == "keep":
    assert keep_freed_heap()
rng = np.random.default_rng(0)
buf = io.BytesIO()
Image.fromarray(rng.integers(0, 255, (4608, 4096), dtype=np.uint8)).save(buf, "JPEG", quality=50)
data = buf.getvalue()
turbojpeg.transform(data, len(data), turbojpeg.OP_ROT90, turbojpeg.OPT_PERFECT)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
turbojpeg.transform(data, len(data), turbojpeg.OP_ROT90, turbojpeg.OPT_PERFECT)
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_workers_reuse_freed_heap_instead_of_faulting_pages_anew() -> None:
    """What each worker process does at start (`keep_freed_heap`): the second turn reuses the
    first one's freed memory instead of page-faulting ~19,000 fresh pages (measured: a third of
    the CPU of a 24 MP turn on this machine)."""
    if not turbojpeg.available():
        pytest.skip("libturbojpeg is not installed")
    faults = {}
    for mode in ("default", "keep"):
        proc = subprocess.run(
            [sys.executable, "-c", TURNS, mode], capture_output=True, text=True, timeout=120, check=True
        )
        faults[mode] = int(proc.stdout.strip().splitlines()[-1])
    assert faults["default"] > 9000, faults  # 38 MB + 38 MB of coefficients mapped afresh
    assert faults["keep"] < faults["default"] / 5, faults


@given(budget=st.integers(min_value=0, max_value=1 << 40), workers=st.integers(min_value=1, max_value=64))
def test_kept_heap_stays_within_a_quarter_of_each_workers_share(budget: int, workers: int) -> None:
    keep = heap_keep(budget, workers)
    assert 16 << 20 <= keep <= WORKER_HEAP_KEEP
    if budget and keep > 16 << 20:
        assert keep * workers * 4 <= budget
