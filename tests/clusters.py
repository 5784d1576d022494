"""What the `convert --cluster` tests share: a real coordinator process, a mixed corpus, and the
comparison of a cluster run with the local pool (test_cluster.py, test_cluster_tls.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
from corpus import make_corpus, outputs
from testdata import DATA, run_report

from orthovision_cli.errors import ExitCode

TMP_GLOB = ".orthovision-tmp-*"


def convert(
    *args: str, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`orthovision convert ARGS` from this checkout, run to its end, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", "convert", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def mixed_corpus(src: Path) -> None:
    """Photos, film scans and a radiograph from tests/data (classified by the models), generated
    crops (JPEG, PNG, 8/16-bit TIFF), a corrupt JPEG, a duplicate and a note."""
    make_corpus(src / "crops", 6, clutter=False)
    for sub, names in (
        ("photos/faces_canada", ("003f.jpg", "008f.jpg")),
        ("film_scans", ("Calc-Test_P_00041_LEFT_CC.png", "Calc-Test_P_00127_RIGHT_MLO.png")),
        ("film_scans/bfd9000", ("example0.png", "example2.png")),
        ("drawings", ("EV-01_EO.RP.LR.CO.png",)),
    ):
        (src / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(DATA / sub / name, src / sub / name)
    shutil.copy(DATA / "photos/faces_canada/003f.jpg", src / "copy-of-003f.jpg")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    (src / "notes.txt").write_text("scanned 2019\n")


def instances(out: Path) -> dict[str, tuple[Any, ...]]:
    """Each output read back with pydicom: its name and its identity (UIDs, number, labels)."""
    found: dict[str, tuple[Any, ...]] = {}
    for f in outputs(out):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        found[f.relative_to(out).as_posix()] = (
            ds.SOPInstanceUID,
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            str(ds.InstanceNumber),
            ds.Modality,
            str(ds.get("BodyPartExamined", "")),
        )
    return found


def report(out: Path) -> dict[str, Any]:
    """The run's JSON report without its timings."""
    data = run_report(out)
    for f in data["files"]:
        del f["seconds"]
    return data


def assert_same_as_local_pool(
    src: Path, tmp: Path, cluster: str, env: dict[str, str] | None = None
) -> tuple[Path, Path]:
    """Convert the mixed corpus at `src` with the local pool (`--jobs 2`) and with `--cluster
    cluster` (its coordinator's environment plus `env`) under the same UID secret: the same
    report entries (statuses, reasons, names, labels with their confidences) and the same
    instances (names, UIDs, numbers, labels). Returns (local output, cluster output)."""
    local, dask = tmp / "local", tmp / "dask"
    first = convert(str(src), "-o", str(local), "--jobs", "2", "--on-uncertain", "convert")
    assert first.returncode == ExitCode.SOME_FAILED, first.stderr  # broken.jpg
    (dask / ".orthovision").mkdir(parents=True)
    shutil.copy(local / ".orthovision" / "uid-secret", dask / ".orthovision" / "uid-secret")
    second = convert(str(src), "-o", str(dask), "--cluster", cluster, "--on-uncertain", "convert", env=env)
    assert second.returncode == ExitCode.SOME_FAILED, second.stderr
    assert "Traceback" not in second.stderr

    a, b = report(local), report(dask)
    assert a["counts"] == b["counts"]
    assert a["counts"]["converted"] == 13 and a["counts"]["failed"] == 1
    assert a["counts"]["ignored"] == 1 and a["counts"]["unchanged"] == 1  # the note; the copy
    assert a["files"] == b["files"]
    labelled = [
        f
        for f in a["files"]
        if any(str((lab or {}).get("source", "")).startswith("local:") for lab in f["labels"].values())
    ]
    assert len(labelled) >= 8  # the model pack did run on the workers
    inst = instances(local)
    assert len(inst) == 13 and inst == instances(dask)
    assert list(dask.rglob(TMP_GLOB)) == []
    return local, dask
