"""`train --from-decisions`: decided images become training data; changed ones are left out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testdata import DATA

from orthovision_cli.answers import Answer, AnswerBook
from orthovision_cli.decisions import Decision, DecisionBook, clean
from orthovision_cli.inputs.source import content_hash
from orthovision_cli.review.teach import build_layout

pytestmark = pytest.mark.slow

REST = sorted((DATA / "photos" / "faces_london" / "rest").glob("*.jpg"))[:3]
SMILE = sorted((DATA / "photos" / "faces_london" / "smile").glob("*.jpg"))[:3]


@pytest.fixture
def decided(tmp_path: Path) -> Path:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    rows = []
    for src, view in [(p, "EV15") for p in REST] + [(p, "EV19") for p in SMILE]:
        dest = inbox / src.name
        shutil.copy2(src, dest)
        rows.append(clean(Decision(str(dest), content_hash(dest), "XC", view, "HEAD", "0", "t", "")))
    DecisionBook(out).save(rows)
    # One image changes after it was decided: it must not teach its old label.
    with (inbox / REST[0].name).open("ab") as f:
        f.write(b"\0")
    return out


def test_layout_leaves_out_changed_files(decided: Path, tmp_path: Path) -> None:
    used, notes = build_layout(tmp_path / "layout", [decided])
    assert used == len(REST) + len(SMILE) - 1
    assert len(notes) == 1 and "changed since it was decided" in notes[0]
    views = {p.name: len(list(p.iterdir())) for p in (tmp_path / "layout" / "protocol").iterdir()}
    assert views == {"EV15": len(REST) - 1, "EV19": len(SMILE)}
    assert sorted(p.name for p in (tmp_path / "layout").iterdir()) == [
        "body_part",
        "modality",
        "orientation",
        "protocol",
    ]


def test_layout_teaches_only_the_tags_the_person_decided(tmp_path: Path) -> None:
    """A decision of the view only keeps the tool's proposals for the other tags in its row:
    they are not the person's word and must not be taught (a placeholder DX for a film would
    teach "digital")."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    out.mkdir()
    dest = inbox / REST[1].name
    shutil.copy2(REST[1], dest)
    row = Decision(str(dest), content_hash(dest), "DX", "EV15", "HEAD", "0", "t", "", decided_tags="protocol")
    DecisionBook(out).save([clean(row)])
    used, _ = build_layout(tmp_path / "layout", [out])
    assert used == 1
    assert [p.name for p in (tmp_path / "layout").iterdir()] == ["protocol"]


def test_train_from_decisions_writes_a_protocol_head(decided: Path, tmp_path: Path) -> None:
    # The person also answered once that a folder's radiographs are scanned films.
    AnswerBook(decided).save(Answer(str(tmp_path / "films"), "film", "t"))
    pack = tmp_path / "pack"
    proc = subprocess.run(
        [sys.executable, "-m", "orthovision_cli", "train", "--from-decisions", str(decided), "-o", str(pack)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "5 decided image(s)" in proc.stderr and "changed since it was decided" in proc.stderr
    manifest = json.loads((pack / "manifest.json").read_text())
    head = next(h for h in manifest["heads"] if h["name"] == "user-protocol")
    assert head["classes"] == ["EV15", "EV19"]
    # Calibrated on its left-out answers; the decided shares and the answer kept beside it.
    assert head["taught"] and head["max_confidence"] <= 0.9 and head["temperature"] >= 1
    assert manifest["taught"]["facts"] == {"radiographs": "film"}
    assert manifest["taught"]["priors"]["photograph"]["protocol"] == {"EV15": 2, "EV19": 3}
    assert "radiographs of this archive: film" in proc.stdout
