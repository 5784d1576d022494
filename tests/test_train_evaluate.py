"""Train-then-evaluate round trip on a small labelled folder built from the shared data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from testdata import DATA
from typer.testing import CliRunner

from orthovision_cli.cli import app
from orthovision_cli.labels.local import load_pack
from orthovision_cli.labels.local.evaluate import evaluate
from orthovision_cli.labels.local.train import train_pack


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Disjoint train / eval folders: chest vs extremity radiographs, and for orientation
    upright chest radiographs (unlabelled) vs other chest radiographs turned by a known angle."""
    root = tmp_path_factory.mktemp("archive")
    chest = sorted((DATA / "radiographs" / "chest").glob("*.png"))
    msk = sorted((DATA / "radiographs" / "musculoskeletal").iterdir())
    for sub in ("train/body_part/CHEST", "train/body_part/EXTREMITY", "eval/body_part/CHEST",
                "eval/body_part/EXTREMITY", "unlabelled"):  # fmt: skip
        (root / sub).mkdir(parents=True)
    for p in chest[:10]:
        shutil.copy(p, root / "train/body_part/CHEST")
        shutil.copy(p, root / "unlabelled")
    for p in chest[10:]:
        shutil.copy(p, root / "eval/body_part/CHEST")
    for p in msk[::2]:
        shutil.copy(p, root / "train/body_part/EXTREMITY")
    for p in msk[1::2]:
        shutil.copy(p, root / "eval/body_part/EXTREMITY")
    for k, p in enumerate(chest[10:]):
        turn = (0, 90, 180, 270)[k % 4]
        out = root / "eval" / "orientation" / str(turn)
        out.mkdir(parents=True, exist_ok=True)
        # PIL turns counter-clockwise: the correction is `turn` clockwise.
        Image.open(p).rotate(turn, expand=True).save(out / p.name)
    return root


@pytest.fixture(scope="module")
def pack(folders: Path) -> Path:
    out = folders / "pack"
    report = train_pack(folders / "train", out, unlabelled=folders / "unlabelled")
    names = {h.name: h for h in report.heads}
    # A head per tag, a rotation head per kind (from the same upright images), the unlabelled one.
    assert set(names) == {
        "user-body_part",
        "user-orientation",
        "user-rotation-body_part-CHEST",
        "user-rotation-body_part-EXTREMITY",
    }
    assert names["user-body_part"].held_out == 14  # leave-one-out over all 14 images
    assert names["user-orientation"].classes == {"0": 10, "180": 10, "270": 10, "90": 10}
    return out


def test_trained_pack_is_a_pack_and_keeps_the_base(pack: Path) -> None:
    manifest = json.loads((pack / "manifest.json").read_text())
    heads = {h["name"]: h for h in manifest["heads"]}
    assert {"intraoral", "smile", "user-body_part", "user-orientation"} <= set(heads)
    assert heads["user-orientation"]["applies_to"] == "radiograph"
    assert (pack / "NOTICE").is_file()
    assert load_pack(pack).name == f"local:{pack.name}"


def test_evaluate_on_images_the_heads_never_saw(folders: Path, pack: Path) -> None:
    report = evaluate(folders / "eval", load_pack(pack), min_confidence=0.8).as_dict()
    body = report["tags"]["body_part"]
    assert body["images"] == 14
    assert body["accuracy"] >= 0.9
    orient = report["tags"]["orientation"]
    assert orient["images"] == 11
    # Four classes: chance is 25 %. Chest radiographs are nearly left-right symmetric, so 90
    # and 270 are the hard pair; 0 and 180 must be right.
    assert orient["accuracy"] >= 0.6
    for truth in ("0", "180"):
        row = orient["confusion"][truth]
        assert row.get(truth, 0) == sum(row.values())
    assert orient["calibration"] and orient["ece"] is not None


def test_default_pack_turns_chest_radiographs_upright(folders: Path) -> None:
    # The default pack's chest rotation head saw these films (docs/models.md has the
    # leave-one-source-out figures); this pins it: every turn right.
    report = evaluate(folders / "eval", load_pack()).as_dict()
    orient = report["tags"]["orientation"]
    assert orient["answered"] == 11
    assert orient["accuracy"] == 1.0


def test_cli_train_and_evaluate(folders: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli-pack"
    res = runner.invoke(app, ["train", str(folders / "train"), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["heads"][0]["name"] == "user-body_part"
    res = runner.invoke(app, ["evaluate", str(folders / "eval"), "--models", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["tags"]["body_part"]["accuracy"] >= 0.9
    res = runner.invoke(app, ["evaluate", str(folders / "eval"), "--models", str(out)])
    assert res.exit_code == 0 and "confusion" in res.stdout


def test_train_refuses_a_folder_that_is_not_a_tag(tmp_path: Path) -> None:
    (tmp_path / "holidays" / "beach").mkdir(parents=True)
    res = CliRunner().invoke(app, ["train", str(tmp_path), "-o", str(tmp_path / "p")])
    assert res.exit_code == 2
    assert "not a tag" in res.output
