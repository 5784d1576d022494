"""Start-up stays light: `--version`, `--help` and a re-run with nothing new never load the
image stack (numpy, Pillow's Image, pydicom, imagecodecs, onnxruntime). A nightly cron job over
a finished archive pays only for the interpreter and the walk (issue 12: under 0.5 s).

Each check runs in a fresh interpreter (this test process has loaded everything long ago)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testdata import DATA

HEAVY = ("numpy", "PIL.Image", "pydicom", "imagecodecs", "onnxruntime", "tifffile")

# Runs the CLI in-process in a fresh interpreter, then prints which heavy modules it loaded.
PROBE = """
import json, sys
heavy = json.loads(sys.argv[2])
from orthovision_cli.cli import main
sys.argv = ["orthovision", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def loaded_by(args: list[str], cwd: Path) -> tuple[object, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    last = proc.stdout.strip().splitlines()[-1]
    got = json.loads(last)
    return got["code"], got["loaded"]


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["classify", "--help"]])
def test_cli_start_loads_no_image_stack(args: list[str], tmp_path: Path) -> None:
    code, loaded = loaded_by(args, tmp_path)
    assert code in (0, None)
    assert loaded == []


def test_rerun_with_nothing_new_loads_no_image_stack(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((DATA / "photos").rglob("*.jp*g"))[:2]:
        shutil.copy(p, src / p.name)
    out = tmp_path / "out"
    args = ["convert", str(src), "-o", str(out), "--no-models", "--modality", "XC", "--quiet"]
    first, loaded_first = loaded_by(args, tmp_path)
    assert first == 0
    assert "pydicom" in loaded_first  # the probe sees real work load the stack
    again, loaded = loaded_by(args, tmp_path)
    assert again == 0
    assert loaded == []
