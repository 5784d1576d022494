"""`orthovision classify` on real images: table, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from testdata import DATA
from typer.testing import CliRunner

from orthovision_cli.cli import app

SMILE = DATA / "photos/faces_london/smile/062_08.jpg"
CHEST = DATA / "radiographs/chest/19073f37.png"


def test_json_output() -> None:
    res = CliRunner().invoke(app, ["classify", str(SMILE), str(CHEST), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    face, chest = data["images"]
    assert face["labels"]["modality"]["value"] == "XC"
    assert face["labels"]["orientation"]["value"] == "0"
    assert face["labels"]["body_part"]["value"] == "HEAD"
    # The radiograph kind head: a chest film, DX, CHEST, upright, sure enough to write.
    assert chest["labels"]["modality"]["value"] == "DX"
    assert chest["labels"]["modality"]["detail"]["kind"] == "chest"
    assert chest["labels"]["body_part"]["value"] == "CHEST"
    assert chest["labels"]["orientation"]["value"] == "0"
    assert chest["review"] == ["modality"]  # film (RG) or digital (DX): not told from an 8-bit file


def test_csv_output_on_a_folder() -> None:
    res = CliRunner().invoke(app, ["classify", str(DATA / "drawings"), "-f", "csv"])
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(table) == 3
    by_name = {Path(r["path"]).name: r for r in table}
    row = by_name["EV-01_EO.RP.LR.CO.png"]
    assert row["protocol"] == "EV01" and row["protocol_source"] == "local:hints"
    assert row["modality"] == ""  # a drawing: not a photograph, whatever its name says


def test_table_output_and_errors(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 32)
    res = CliRunner().invoke(app, ["classify", str(SMILE), str(bad)])
    assert res.exit_code == 4  # some failed
    assert "062_08.jpg" in res.stdout and "corrupt" in res.stdout


def test_bad_pack_and_nothing_found(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["classify", str(SMILE), "--models", str(tmp_path)])
    assert res.exit_code == 2 and "model-pack" in res.output
    (tmp_path / "notes.txt").write_text("x")
    res = CliRunner().invoke(app, ["classify", str(tmp_path)])
    assert res.exit_code == 3
