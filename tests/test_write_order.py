"""The write stage starts the heaviest jobs first (a lossless turn before pass-through copies): a
turn started last would keep one worker busy while the others idle at the end of the batch.
The order changes nothing written (names and UIDs are planned before)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from orthovision_cli.batch import write
from orthovision_cli.batch.pool import IN_PROCESS_ENV
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings


def photo(path: Path, orientation: int) -> None:
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    im = Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, quality=90, exif=exif.tobytes())


def test_turns_are_written_before_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        photo(src / name, 1)
    photo(src / "z_turned.jpg", 6)  # planned last (its name sorts last)
    order: list[str] = []
    real = write.write_job

    def recording(job: write.WriteJob) -> Any:
        order.append(job.plan.input.rel)
        return real(job)

    monkeypatch.setenv(IN_PROCESS_ENV, "1")  # the jobs run here, in the order given
    monkeypatch.setattr(write, "write_job", recording)
    summary = run_convert(
        ConvertSettings(inputs=[src], output=tmp_path / "out", use_models=False, labels={"modality": "XC"})
    )
    assert summary.counts == {"converted": 4}
    assert order[0] == "z_turned.jpg"
    assert order[1:] == ["a.jpg", "b.jpg", "c.jpg"]  # equals keep the planned order
