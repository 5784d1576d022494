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


CHEST = DATA / "radiographs/chest/19073f37.png"  # film or digital: the modality waits for a person


@pytest.mark.parametrize("command", ["convert", "watch"])
def test_a_run_whose_files_all_wait_for_review_exits_4(tmp_path: Path, command: str) -> None:
    """Needs review is its own outcome: 4 when all files wait (issue 21), never 5 (fatal); a
    cron job running `watch --once` sees the same code as `convert`."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / CHEST.name).write_bytes(CHEST.read_bytes())
    out = tmp_path / "out"
    argv = [command, str(inbox), "-o", str(out), "-j", "1"]
    if command == "watch":
        argv += ["--once", "--settle", "0.1"]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == ExitCode.SOME_FAILED, res.output
    report = (out / "orthovision-report.json").read_text()
    assert '"status": "review"' in report and '"exit_code": 4' in report
    # One file that fails beside it changes nothing: the review still decides the outcome.
    (inbox / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 32)
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == ExitCode.SOME_FAILED, res.output
    # Only failures and nothing converted: that is still fatal.
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 32)
    res = CliRunner().invoke(app, ["convert", str(only_bad), "-o", str(tmp_path / "out2"), "-j", "1"])
    assert res.exit_code == ExitCode.FATAL, res.output
