"""Model pack loading: manifest, sha256 checks, the default location and its override."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orthovision_cli.errors import ModelPackError
from orthovision_cli.labels.local import ENV_VAR, default_pack_path, read_pack
from orthovision_cli.labels.local.packs import referenced_files

PACK = Path(__file__).resolve().parents[1] / "models"


def test_default_pack_is_complete() -> None:
    pack = read_pack()
    assert pack.root.resolve() == PACK.resolve()
    files = referenced_files(pack.manifest)
    assert {f for f, _ in files} >= {
        "face_detection_full_range.onnx",
        "face_landmark.onnx",
        "mobilenet_v2_features.onnx",
        "heads/intraoral.npz",
        "heads/smile.npz",
    }
    notice = (PACK / "NOTICE").read_text(encoding="utf-8")
    for f, _ in files:
        assert Path(f).name in notice
    for spec in pack.manifest["models"].values():
        assert spec["licence"] and spec["source"]


def test_env_var_overrides_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert default_pack_path() == tmp_path
    with pytest.raises(ModelPackError, match="no model pack"):
        read_pack()


def _copy_pack(tmp_path: Path) -> Path:
    dst = tmp_path / "pack"
    shutil.copytree(PACK, dst, ignore=shutil.ignore_patterns("tools", "__pycache__"))
    return dst


def test_altered_file_is_refused(tmp_path: Path) -> None:
    dst = _copy_pack(tmp_path)
    head = dst / "heads" / "smile.npz"
    head.write_bytes(head.read_bytes() + b"\x00")
    with pytest.raises(ModelPackError, match="sha256"):
        read_pack(dst)


def test_missing_file_and_bad_manifest_are_refused(tmp_path: Path) -> None:
    dst = _copy_pack(tmp_path)
    (dst / "face_landmark.onnx").unlink()
    with pytest.raises(ModelPackError, match="missing"):
        read_pack(dst)
    mf = dst / "manifest.json"
    data = json.loads(mf.read_text())
    data["format"] = "something-else"
    mf.write_text(json.dumps(data))
    with pytest.raises(ModelPackError, match="not an"):
        read_pack(dst)


def test_file_outside_pack_is_refused(tmp_path: Path) -> None:
    dst = _copy_pack(tmp_path)
    mf = dst / "manifest.json"
    data = json.loads(mf.read_text())
    data["heads"][0]["file"] = "../../etc/passwd"
    mf.write_text(json.dumps(data))
    with pytest.raises(ModelPackError, match="outside"):
        read_pack(dst)


def test_installed_layout_finds_the_pack_inside_the_package(tmp_path: Path) -> None:
    """As a wheel installs it: the package with the pack as `orthovision_cli/_models`, and no
    checkout (pyproject.toml, models/) beside it. `--version` names that pack."""
    site = tmp_path / "site"
    shutil.copytree(PACK.parent / "orthovision_cli", site / "orthovision_cli",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(PACK, site / "orthovision_cli" / "_models",
                    ignore=shutil.ignore_patterns("tools", "__pycache__"))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = str(site)
    code = "from orthovision_cli.labels.local import default_pack_path; print(default_pack_path())"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    assert Path(out) == site / "orthovision_cli" / "_models"
    version = subprocess.run([sys.executable, "-m", "orthovision_cli", "--version"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, check=True).stdout  # fmt: skip
    lines = version.splitlines()
    assert lines[0].startswith("orthovision ") and lines[2].startswith("pydicom ")
    assert lines[1].startswith("model pack: default ") and str(site) in lines[1]
    assert lines[3].startswith("onnxruntime ")
