"""One mapping from errors to exit codes (`errors.exit_code_for`), the same in every command:
a broken model pack is a usage error (2) in `convert` as in `classify`, `evaluate` and `train`
(`convert` used to exit 5 for it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from testdata import DATA
from typer.testing import CliRunner

from orthovision_cli.cli import app
from orthovision_cli.errors import (
    AuthRefused,
    CorruptImage,
    ExitCode,
    ModelPackError,
    OutputError,
    StateLocked,
    UsageError,
    exit_code_for,
)

PHOTO = DATA / "photos/faces_london/rest/005_03.jpg"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("bad option"), ExitCode.USAGE),
        (ModelPackError("no pack"), ExitCode.USAGE),
        (OutputError("disk full"), ExitCode.FATAL),
        (StateLocked("another run"), ExitCode.FATAL),
        (CorruptImage("bad"), ExitCode.FATAL),
        (AuthRefused("401"), ExitCode.DESTINATION),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
    ],
)
def test_exit_code_for(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_a_broken_model_pack_exits_2_in_every_command(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-pack"
    empty.mkdir()
    runs = {
        "convert": ["convert", str(PHOTO), "-o", str(tmp_path / "out"), "--models", str(empty)],
        "classify": ["classify", str(PHOTO), "--models", str(empty)],
        "evaluate": ["evaluate", str(DATA / "drawings"), "--models", str(empty)],
    }
    for name, argv in runs.items():
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == ExitCode.USAGE, (name, res.output)
        assert "model-pack" in res.output, (name, res.output)
