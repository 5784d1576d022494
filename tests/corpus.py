"""A batch corpus: many small, distinct, real inputs (JPEG, PNG, TIFF) in nested folders.

Every file is a different crop of a real photograph or film scan from sample_data/, so no two
share a content hash (the runner converts identical content once). Used by the batch tests and
by bench/bench_batch.py. Convert it with `--no-models --modality OT --body-part HEAD`.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import tifffile
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
LABEL_ARGS = ["--no-models", "--modality", "OT", "--body-part", "HEAD"]
KINDS = ("jpg", "png", "tif8", "tif16")
CLI = [sys.executable, "-m", "orthovision_cli"]  # `orthovision` from this checkout


def convert_command(src: Path, out: Path, *extra: str) -> list[str]:
    """A real `orthovision convert` process over the corpus: its labels, two workers."""
    return [*CLI, "convert", str(src), "-o", str(out), *LABEL_ARGS, "--jobs", "2", *extra]


def run_convert_process(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`convert_command` run to its end (at most 2 minutes), its output captured as text."""
    return subprocess.run(convert_command(src, out, *extra), capture_output=True, text=True, timeout=120)


def _sources() -> tuple[list[Image.Image], np.ndarray]:
    photos = [Image.open(SAMPLE / "photos" / n).convert("RGB") for n in ("005_03.jpg", "005_08.jpg")]
    film = np.asarray(Image.open(SAMPLE / "film_scans" / "Calc-Test_P_00041_LEFT_CC.png"))
    return photos, film.astype(np.uint16)


def _offset(i: int, room: int) -> int:
    return 37 * i % room if room > 0 else 0


def make_corpus(folder: Path, n: int = 36, side: int = 256, clutter: bool = True) -> list[Path]:
    """`n` inputs under `folder` (a sub-folder per 10 files), each `side` pixels wide (at most
    890); returns them sorted as the walker finds them. Deterministic: same call, same bytes."""
    photos, film = _sources()
    out: list[Path] = []
    h = side * 3 // 4
    for i in range(n):
        sub = folder / f"visit{i // 10:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        kind = KINDS[i % len(KINDS)]
        name = sub / f"img{i:04d}"
        # The file's number in its first pixels: distinct content, distinct hashes, at any n.
        stamp = np.frombuffer(i.to_bytes(4, "big"), np.uint8)
        if kind in ("jpg", "png"):
            photo = photos[(i // 4) % 2]
            dx, dy = _offset(i, photo.width - side), _offset(3 * i, photo.height - h)
            rgb = np.array(photo.crop((dx, dy, dx + side, dy + h)))
            rgb[:8, :32] = np.repeat(np.repeat(stamp, 8)[None, :, None], 8, axis=0)
            path = name.with_suffix("." + kind)
            if kind == "jpg":
                Image.fromarray(rgb).save(path, "JPEG", quality=90)
            else:
                Image.fromarray(rgb).save(path)
        else:
            dx, dy = _offset(i, film.shape[1] - side), _offset(3 * i, film.shape[0] - h)
            arr = film[dy : dy + h, dx : dx + side]
            arr = (arr >> 8).astype(np.uint8) if kind == "tif8" else arr.copy()
            arr[0, :4] = stamp
            path = name.with_suffix(".tif")
            if kind == "tif8":
                tifffile.imwrite(path, arr, photometric="minisblack")
            else:
                tifffile.imwrite(path, arr, photometric="minisblack", compression="zlib")
        out.append(path)
    if clutter:  # skipped quietly by the walker: never an input, never a failure
        (folder / "Thumbs.db").write_bytes(b"\x00" * 64)
        (folder / "visit00" / ".DS_Store").write_bytes(b"\x00Bud1")
        (folder / "visit00" / "._img0000.jpg").write_bytes(b"\x00\x05\x16\x07")
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def outputs(out: Path) -> list[Path]:
    """Finished outputs under `out` (a temp file also ends in .dcm)."""
    return sorted(p for p in out.rglob("*.dcm") if not p.name.startswith(".orthovision-tmp-"))


def assert_converted_once(inputs: list[Path], out: Path) -> list[Path]:
    """Every input in the state (done) and in the output tree exactly once; nothing partial.
    Assumes the default name template, which ends in {source}{page}.dcm."""
    db = sqlite3.connect(f"file:{out / '.orthovision' / 'state.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT path, status, outputs FROM inputs").fetchall()
    finally:
        db.close()
    state = {path: (status, json.loads(outs)) for path, status, outs in rows}
    assert sorted(state) == sorted(str(p) for p in inputs)
    assert {s for s, _ in state.values()} == {"done"}, state
    recorded = sorted(o for _, outs in state.values() for o in outs)
    files = outputs(out)
    assert len(files) == len(inputs) == len(recorded)
    assert sorted(f.relative_to(out).as_posix() for f in files) == recorded
    assert sorted(f.stem for f in files) == sorted(p.stem for p in inputs)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    assert len(set(uids)) == len(inputs)
    assert list(out.rglob(".orthovision-tmp-*")) == []
    assert not (out / "orthovision-report.json.tmp").exists()
    return files
