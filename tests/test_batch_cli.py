"""`orthovision convert` as a cron job and by hand: a TOML file makes the whole command, plain
log lines when not on a terminal, --quiet, --verbose, --json and --dry-run."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from corpus import LABEL_ARGS, make_corpus, outputs
from typer.testing import CliRunner

from orthovision_cli.cli import app
from orthovision_cli.errors import ExitCode

N = 6


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    make_corpus(folder, N)
    return folder


def _convert(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["convert", *args])
    assert "Traceback" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_toml_config_is_the_whole_cron_line(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "practice.toml"
    config.write_text(
        "# nightly: orthovision convert --config /srv/practice.toml\n"
        'inputs = ["photos"]\n'
        'output = "dicom"\n'
        "jobs = 2\n"
        "no-models = true\n"
        'modality = "OT"\n'
        'body-part = "HEAD"\n'
        'patient-id = "P-1"\n'
        'include = ["*.jpg", "*.png"]\n'
        'exclude = ["visit00/img0000.*"]\n'
    )
    elsewhere = tmp_path / "cron-home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # cron starts in $HOME: paths are relative to the file
    code, _out, err = _convert("--config", str(config))
    assert code == ExitCode.OK, err
    files = outputs(tmp_path / "dicom")
    # img0000 (jpg) excluded; of 6 files, jpg: 0, 4; png: 1, 5.
    assert sorted(f.stem for f in files) == ["img0001", "img0004", "img0005"]
    assert {pydicom.dcmread(f, stop_before_pixels=True).PatientID for f in files} == {"P-1"}
    assert not list(elsewhere.iterdir())

    # Options on the command line win over the file.
    code, _out, err = _convert("--config", str(config), "-o", str(tmp_path / "other"), "--patient-id", "P-2")
    assert code == ExitCode.OK, err
    files = outputs(tmp_path / "other")
    assert len(files) == 3
    assert {pydicom.dcmread(f, stop_before_pixels=True).PatientID for f in files} == {"P-2"}


def test_plain_log_lines_when_not_on_a_terminal(src: Path, tmp_path: Path) -> None:
    code, out, err = _convert(str(src), "-o", str(tmp_path / "out"), *LABEL_ARGS, "--jobs", "1")
    assert code == ExitCode.OK
    assert "\x1b[" not in err  # no colours, no cursor movement: a log file stays readable
    assert f"{N} file(s) found, {N} new or changed" in err
    assert f"orthovision: analysing {N}/{N}" in err and f"orthovision: writing {N}/{N}" in err
    assert "exit code 0 (ok)" in err and "report:" in err
    assert out == ""


def test_quiet_is_silent_on_success_and_speaks_on_failure(src: Path, tmp_path: Path) -> None:
    code, out, err = _convert(str(src), "-o", str(tmp_path / "out"), *LABEL_ARGS, "--quiet")
    assert (code, out, err) == (ExitCode.OK, "", "")
    (src / "notes.jpg").write_text("not a photograph")
    code, out, err = _convert(str(src), "-o", str(tmp_path / "out"), *LABEL_ARGS, "--quiet")
    assert code == ExitCode.SOME_FAILED and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("failed: notes.jpg: unsupported-format: ")
    assert lines[1].startswith("exit code 4 (some failed); report: ")


def test_verbose_gives_a_line_per_file(src: Path, tmp_path: Path) -> None:
    code, _out, err = _convert(str(src), "-o", str(tmp_path / "out"), *LABEL_ARGS, "--verbose")
    assert code == ExitCode.OK
    lines = [ln for ln in err.splitlines() if ln.startswith("converted: ")]
    assert len(lines) == N
    assert all(" -> " in ln and ln.endswith(".dcm") for ln in lines)


def test_json_lists_every_file_on_stdout(src: Path, tmp_path: Path) -> None:
    code, out, err = _convert(str(src), "-o", str(tmp_path / "out"), *LABEL_ARGS, "--json")
    assert code == ExitCode.OK and err == ""
    report = json.loads(out)
    assert report["exit_code"] == 0 and report["counts"] == {"converted": N}
    for f in report["files"]:
        assert f["status"] == "converted" and len(f["sha256"]) == 64 and len(f["outputs"]) == 1
        assert f["labels"]["modality"]["value"] == "OT"
        assert f["labels"]["modality"]["source"] == "option"
        assert f["labels"]["modality"]["confidence"] == 1.0


def test_dry_run_plans_and_writes_nothing(src: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, out, err = _convert(str(src), "-o", str(out_dir), *LABEL_ARGS, "--dry-run", "--json")
    assert code == ExitCode.OK, err
    report = json.loads(out)
    assert report["counts"] == {"planned": N}
    planned = sorted(o for f in report["files"] for o in f["outputs"])
    assert len(planned) == N and all(o.endswith(".dcm") for o in planned)
    assert outputs(out_dir) == [] and not (out_dir / "orthovision-report.json").exists()
    # The plan is what a real run then writes.
    code, out, err = _convert(str(src), "-o", str(out_dir), *LABEL_ARGS, "--json")
    assert code == ExitCode.OK
    assert sorted(f.relative_to(out_dir).as_posix() for f in outputs(out_dir)) == planned


def test_nothing_found_exits_3(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "Thumbs.db").write_bytes(b"\x00")
    code, _out, err = _convert(str(empty), "-o", str(tmp_path / "out"), *LABEL_ARGS)
    assert code == ExitCode.NOTHING_FOUND, err


def test_the_documented_config_example_is_valid(tmp_path: Path) -> None:
    import re

    from orthovision_cli.config import ConvertSettings, load_toml

    doc = (Path(__file__).resolve().parents[1] / "docs" / "batch.md").read_text()
    example = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert example is not None
    config = tmp_path / "practice.toml"
    config.write_text(example.group(1))
    settings = ConvertSettings(**load_toml(config))
    assert settings.jobs == 2 and settings.patient == {"institution": "Smile Orthodontics"}
    assert settings.manifest == tmp_path / "patients.csv"
