"""Model pack loading: manifest, sha256 checks, the default location and its override."""

from __future__ import annotations

import json
import shutil
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
