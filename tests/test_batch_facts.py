"""Batch facts (issue 20): `--radiographs film|digital` (option, TOML, manifest column, a
person's answer remembered in the output) settles RG or DX for the radiograph kinds that exist
as both, with the real embedded pack; photographs and panoramics keep theirs; what is written
passes dciodvfy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from conftest import REPO, dciodvfy
from typer.testing import CliRunner

from orthovision_cli.answers import Answer, AnswerBook, load, source_folder
from orthovision_cli.cli import app
from orthovision_cli.errors import UsageError
from orthovision_cli.labels.facts import apply_radiographs, open_question, parse_radiographs
from orthovision_cli.labels.model import Label, Labels

CLASSIFY = REPO / "tests" / "data" / "classify"
# Two radiographs whose film or digital the file does not tell, a panoramic, a photograph (an
# intraoral one: the smile head leaves a face at rest to a person, issue 28).
MIXED = ("ceph_lateral.jpg", "chest_1.png", "panoramic.jpg", "io_frontal.jpg")


def _inbox(tmp_path: Path, names: tuple[str, ...] = MIXED, folder: str = "films") -> Path:
    inbox = tmp_path / "in"
    (inbox / folder).mkdir(parents=True)
    for name in names:
        shutil.copy(CLASSIFY / name, inbox / folder / name)
    return inbox


def variant(src: Path, dest: Path, n: int) -> None:
    """A copy of a JPEG with a comment segment of its own: the same picture, other content
    (not a duplicate of the others)."""
    data = src.read_bytes()
    text = f"copy {n}".encode()
    comment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    dest.write_bytes(data[:2] + comment + data[2:])


def _convert(*args: str) -> dict:
    result = CliRunner().invoke(app, ["convert", *args, "-j", "1", "--no-fsync", "--json"])
    assert result.exit_code in (0, 4, 5), result.output  # 5: all wait (issue 21 makes it 4)
    return json.loads(result.stdout)


def _written(report: dict) -> dict[str, str]:
    """input file name -> Modality written."""
    out = {}
    for f in report["files"]:
        for o in f.get("outputs") or []:
            out[Path(f["input"]).name] = o
    return out


def _modalities(out: Path, report: dict) -> dict[str, str]:
    return {name: str(pydicom.dcmread(out / o).Modality) for name, o in _written(report).items()}


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.parametrize(("fact", "modality"), [("film", "RG"), ("digital", "DX")])
def test_radiographs_option_writes_rg_or_dx(tmp_path: Path, fact: str, modality: str) -> None:
    inbox, out = _inbox(tmp_path), tmp_path / "out"
    report = _convert(str(inbox), "-o", str(out), "--radiographs", fact)
    got = _modalities(out, report)
    # Photographs and panoramics are not affected; the two radiographs need no person.
    assert got == {
        "ceph_lateral.jpg": modality,
        "chest_1.png": modality,
        "panoramic.jpg": "PX",
        "io_frontal.jpg": "XC",
    }, report
    for name, o in _written(report).items():
        errors, _ = dciodvfy(out / o, allow=("ViewCodeSequence",))
        assert errors == [], (name, errors)
    labels = {Path(f["input"]).name: f["labels"] for f in report["files"]}
    detail = labels["ceph_lateral.jpg"]["modality"]["detail"]
    assert detail["radiographs"] == fact and detail["radiographs_from"] == "option"


@pytest.mark.slow
def test_without_the_fact_the_modality_waits(tmp_path: Path) -> None:
    inbox, out = _inbox(tmp_path, ("ceph_lateral.jpg", "panoramic.jpg")), tmp_path / "out"
    report = _convert(str(inbox), "-o", str(out))
    status = {Path(f["input"]).name: f["status"] for f in report["files"]}
    assert status == {"ceph_lateral.jpg": "review", "panoramic.jpg": "converted"}


@pytest.mark.slow
def test_toml_and_manifest_say_it_per_folder(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    for n, folder in enumerate(("old", "new")):
        (inbox / folder).mkdir(parents=True)
        variant(CLASSIFY / "ceph_lateral.jpg", inbox / folder / f"{folder}.jpg", n)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,Radiographs\nold,film\n", encoding="utf-8")
    config = tmp_path / "practice.toml"
    config.write_text(f'radiographs = "digital"\nmanifest = "{manifest.name}"\n', encoding="utf-8")
    out = tmp_path / "out"
    # The TOML fact is the option's: it wins over the manifest's folder row.
    report = _convert(str(inbox), "-o", str(out), "--config", str(config))
    assert _modalities(out, report) == {"old.jpg": "DX", "new.jpg": "DX"}
    # The manifest alone: its folder row says film for old/, new/ still waits for a person.
    out2 = tmp_path / "out2"
    report = _convert(str(inbox), "-o", str(out2), "--manifest", str(manifest))
    assert _modalities(out2, report) == {"old.jpg": "RG"}
    status = {Path(f["input"]).name: f["status"] for f in report["files"]}
    assert status["new.jpg"] == "review"


@pytest.mark.slow
def test_a_remembered_answer_applies_on_later_runs(tmp_path: Path) -> None:
    inbox, out = _inbox(tmp_path, ("ceph_lateral.jpg",)), tmp_path / "out"
    report = _convert(str(inbox), "-o", str(out))
    assert report["files"][0]["status"] == "review"
    AnswerBook(out).save(Answer(str(inbox.absolute()), "film", "tester"))
    report = _convert(str(inbox), "-o", str(out))
    assert _modalities(out, report) == {"ceph_lateral.jpg": "RG"}
    detail = report["files"][0]["labels"]["modality"]["detail"]
    assert detail["radiographs_from"] == "person"


def test_bad_values_are_one_line_usage_errors(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path, ("face_rest.jpg",))
    result = CliRunner().invoke(app, ["convert", str(inbox), "-o", str(tmp_path / "o"), "--radiographs", "x"])
    assert result.exit_code == 2 and "--radiographs must be film or digital" in result.output
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,Radiographs\nfilms,paper\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["convert", str(inbox), "-o", str(tmp_path / "o"), "--manifest", str(manifest)]
    )
    assert result.exit_code == 2 and "Radiographs must be film or digital" in result.output
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "orthovision-settings.toml").write_text(
        '[[radiographs]]\nfolder = "/x"\nacquisition = "maybe"\n', encoding="utf-8"
    )
    with pytest.raises(UsageError, match="acquisition must be film or digital"):
        load(tmp_path / "o")
    result = CliRunner().invoke(app, ["convert", str(inbox), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "orthovision-settings.toml" in result.output


def test_fact_rules() -> None:
    assert [parse_radiographs(v) for v in ("Film", "RG", "digital", "dx")] == [
        "film",
        "film",
        "digital",
        "digital",
    ]
    entry = {"film": "RG", "digital": "DX", "confidence": 0.97}
    ceph = Labels(
        modality=Label(
            "modality",
            "DX",
            0.75,
            "local:head:radiograph_kind",
            detail={"acquisition": "unknown", "film_or_digital": entry, "note": "..."},
        )
    )
    assert open_question(ceph)
    film = apply_radiographs(ceph, "film", "option")
    lab = film.get("modality")
    assert lab is not None and (lab.value, lab.confidence) == ("RG", 0.97) and "note" not in lab.detail
    assert not open_question(film)
    # A person's modality, a panoramic, a photograph: unchanged.
    for labels in (
        Labels(modality=Label("modality", "DX", 1.0, "manifest")),
        Labels(modality=Label("modality", "PX", 0.99, "local:head:radiograph_kind")),
        Labels(modality=Label("modality", "XC", 0.99, "local:photo")),
    ):
        assert apply_radiographs(labels, "film", "option") == labels
    # A file that states it is a whole film keeps RG whatever the batch fact says.
    stated = Labels(
        modality=Label(
            "modality",
            "RG",
            0.99,
            "local:head:radiograph_kind",
            detail={"acquisition": "film", "film_or_digital": entry},
        )
    )
    kept = apply_radiographs(stated, "digital", "option").get("modality")
    assert kept is not None and (kept.value, kept.confidence) == ("RG", 0.99)
    # Another source naming DX: the value follows the fact, its confidence stays.
    remote = apply_radiographs(Labels(modality=Label("modality", "DX", 0.9, "remote")), "film", "option")
    assert remote.value("modality") == "RG"


def test_answers_file_round_trip(tmp_path: Path) -> None:
    book = AnswerBook(tmp_path)
    odd = '/scans/"quoted" \\ folder\tx'
    book.save(Answer("/scans/films", "film", "alice"))
    book.save(Answer(odd, "digital", "bob"))
    again = AnswerBook(tmp_path)
    assert again.by_folder["/scans/films"].acquisition == "film"
    assert again.by_folder[odd].answered_by == "bob" and again.by_folder[odd].answered_at
    found = again.radiographs_for("/scans/films/1998/a.jpg")
    assert found is not None and found.acquisition == "film"
    assert again.radiographs_for("/elsewhere/a.jpg") is None
    assert source_folder("/scans/films/1998/a.jpg", "1998/a.jpg") == "/scans/films"
    assert source_folder("/tmp/state/archives/x.jpg", "a.zip/x.jpg") == "/tmp/state/archives"


@pytest.mark.slow
def test_watch_converts_what_an_answer_settles(tmp_path: Path) -> None:
    from orthovision_cli.config import ConvertSettings
    from orthovision_cli.review.watch import HotFolder

    inbox, out = _inbox(tmp_path, ("ceph_lateral.jpg",)), tmp_path / "out"
    folder = HotFolder(ConvertSettings(inputs=[inbox], output=out, jobs=1, fsync=False), settle=0)
    first = folder.run_once()
    assert first is not None and [r.status for r in first.results] == ["review"]
    assert folder.run_once() is None  # nothing new: not analysed again
    AnswerBook(out).save(Answer(str(inbox.absolute()), "digital", "tester"))
    second = folder.run_once()  # the answer settles it: converted at the next look
    assert second is not None and [r.status for r in second.results] == ["converted"]
    assert [str(pydicom.dcmread(p).Modality) for p in out.rglob("*.dcm")] == ["DX"]
    assert folder.run_once() is None


@pytest.mark.slow
def test_classify_takes_the_fact(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path, ("ceph_lateral.jpg", "face_rest.jpg"))
    result = CliRunner().invoke(app, ["classify", str(inbox), "--radiographs", "film", "-f", "json"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in json.loads(result.stdout)["images"]}
    assert rows["ceph_lateral.jpg"]["labels"]["modality"]["value"] == "RG"
    assert rows["ceph_lateral.jpg"]["labels"]["modality"]["meaning"] != "Digital Radiography"
    assert "modality" not in rows["ceph_lateral.jpg"]["review"]
    assert rows["face_rest.jpg"]["labels"]["modality"]["value"] == "XC"
