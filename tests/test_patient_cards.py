"""Issue 26: a camera card with patient cards (QR codes photographed before a patient's views)
becomes one study per visit, each for the card's patient; the cards are not converted."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
import zxingcpp
from PIL import Image
from testdata import DATA, run_report

from orthovision_cli.batch.cards import Card, assign_cards, card_payload
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.decisions import Decision, DecisionBook, clean
from orthovision_cli.dicom.plan import PatientInfo, PlanInput
from orthovision_cli.dicom.records import incomplete_line
from orthovision_cli.errors import ExitCode, InputError
from orthovision_cli.inputs.cards import read_codes
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.review.questions import applicable_inputs
from orthovision_cli.types import ExifFacts, PageFacts, Probe

T0 = datetime(2026, 3, 2, 9, 0, 0)
REST = DATA / "photos/faces_london/rest/005_03.jpg"
SMILE = DATA / "photos/faces_london/smile/062_08.jpg"
FRONTAL = DATA / "photos/intraoral/sjtu_p0_frontal.png"


def _save(im: Image.Image, dest: Path, when: datetime) -> None:
    exif = Image.Exif()
    exif[0x8769] = {0x9003: when.strftime("%Y:%m:%d %H:%M:%S")}
    im.convert("RGB").save(dest, exif=exif.tobytes(), quality=92)


def _card(text: str, dest: Path, when: datetime) -> None:
    """A card held before the camera: a QR code on a white card on a photo-like background."""
    code = np.asarray(
        zxingcpp.write_barcode_to_image(
            zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode), scale=10
        )
    )
    with Image.open(REST) as bg:
        photo = bg.convert("RGB").resize((1600, 1200))
    card = Image.new("RGB", (code.shape[1] + 120, code.shape[0] + 120), "white")
    card.paste(Image.fromarray(code).convert("RGB"), (60, 60))
    photo.paste(card, (500, 250))
    _save(photo, dest, when)


def _photo(src: Path, dest: Path, when: datetime) -> None:
    with Image.open(src) as im:
        _save(im, dest, when)


def test_payloads() -> None:
    assert card_payload(" P123 \n").patient_id == "P123"
    p = card_payload("id=P2; name=Doe, Jane\nbirth=2012-04-01")
    assert (p.patient_id, p.patient_name, p.birth_date) == ("P2", "Doe^Jane", "20120401")
    assert card_payload("PatientID=P3;PatientName=Roe^Ann;BirthDate=20100101").patient_name == "Roe^Ann"
    assert card_payload("2024/0815-A").patient_id == "2024/0815-A"
    assert card_payload("id=P4; timepoint=Progress").timepoint == "PROGRESS"
    for bad in (
        "colour=blue",
        "name=",
        "id=P1\\P2",
        "birth=2099-01-01;id=P",
        "https://example.org/x",
        "Scan me for 10% off",
        "X" * 65,
    ):
        with pytest.raises(InputError):
            card_payload(bad)


def test_read_codes_finds_only_the_card_formats(tmp_path: Path) -> None:
    _card("id=P7", tmp_path / "c.jpg", T0)
    with Image.open(tmp_path / "c.jpg") as im:
        assert read_codes(np.asarray(im.convert("RGB"))) == ["id=P7"]
    ean = zxingcpp.write_barcode_to_image(
        zxingcpp.create_barcode("4006381333931", zxingcpp.BarcodeFormat.EAN13), scale=6
    )
    assert read_codes(np.asarray(ean)) == []
    with Image.open(REST) as im:
        assert read_codes(np.asarray(im.convert("RGB"))) == []


def _item(name: str, minutes: float) -> PlanInput:
    probe = Probe(
        path=Path("/card/DCIM") / name,
        format="jpeg",
        size=1,
        pages=[PageFacts(rows=10, columns=10, samples=3, bits=8, photometric="RGB")],
        exif=ExifFacts(acquired=T0 + timedelta(minutes=minutes), make="N", model="1"),
    )
    labels = Labels(modality=Label("modality", "XC", source="user"))
    return PlanInput(name, name, probe, labels, PatientInfo(institution="Smile"), name)


def test_a_card_names_the_photos_after_it_and_two_cards_go_to_review() -> None:
    photos = [_item(n, m) for n, m in [("a", 0), ("b", 2), ("c", 4), ("d", 6), ("e", 40), ("f", 41)]]
    cards = [
        Card(_item("k1", 1), PatientInfo(patient_id="P1")),
        Card(_item("k2", 3.5), PatientInfo(patient_id="P2")),
        Card(_item("k3", 30), PatientInfo(patient_id="P3")),
        Card(_item("k4", 30.5), PatientInfo(patient_id="P4")),
    ]
    got = assign_cards(photos, cards, 10)
    ids = {i.rel: i.patient.patient_id for i in got.items}
    assert ids == {"b": "P1", "c": "P2", "d": "P2"}
    assert {i.patient.institution for i in got.items} == {"Smile"}  # what the user said stays
    assert sorted(i.rel for i in got.conflicts) == ["e", "f"]  # P3 and P4 before one visit
    assert [i.rel for i in got.unnamed] == ["a"]  # before its visit's card: whose is it?
    # A person's patient for one photograph of the two-card visit settles all of it.
    named = [*photos[:5], replace(photos[5], patient=PatientInfo(patient_id="P4"))]
    got = assign_cards(named, cards, 10)
    assert got.conflicts == [] and {i.rel: i.patient.patient_id for i in got.items}["e"] == "P4"
    # The same card twice is one card.
    again = assign_cards(photos[4:], [cards[2], Card(_item("k3b", 31), PatientInfo(patient_id="P3"))], 10)
    assert [i.patient.patient_id for i in again.items] == ["P3", "P3"] and again.conflicts == []


def test_a_visit_no_card_names_waits_for_a_person_and_one_answer_names_all_of_it() -> None:
    card = Card(_item("k1", 0), PatientInfo(patient_id="P1"))
    first = [_item("a", 1), _item("b", 2)]
    second = [_item("c", 30), _item("d", 31), _item("e", 32)]  # no card before it
    got = assign_cards([*first, *second], [card], 10)
    assert sorted(i.rel for i in got.unnamed) == ["c", "d", "e"]
    assert {i.rel: i.patient.patient_id for i in got.items} == {"a": "P1", "b": "P1"}
    # A person names one photograph of the visit (a decision, a manifest row): all follow.
    named = PatientInfo(institution="Smile", patient_id="P9", age="012Y")
    second[1] = replace(second[1], patient=named)
    got = assign_cards([*first, *second], [card], 10)
    assert got.unnamed == [] and got.conflicts == []
    assert {i.rel: (i.patient.patient_id, i.patient.age) for i in got.items if i.rel in "cde"} == {
        "c": ("P9", "012Y"),
        "d": ("P9", "012Y"),
        "e": ("P9", "012Y"),
    }
    # Two patients named in one card-less visit: the rest are not guessed.
    second[2] = replace(second[2], patient=PatientInfo(patient_id="P8"))
    got = assign_cards([*first, *second], [card], 10)
    assert [i.rel for i in got.unnamed] == ["c"]
    # A folder without any card is left as it was (no cards in use there).
    elsewhere = [replace(i, probe=replace(i.probe, path=Path("/other") / i.rel)) for i in second[:1]]
    got = assign_cards([*first, *elsewhere], [card], 10)
    assert got.unnamed == [] and [i.patient.patient_id for i in got.items if i.rel == "c"] == [""]


def test_convert_a_card_of_three_visits(tmp_path: Path) -> None:
    inbox = tmp_path / "DCIM"
    inbox.mkdir()
    v2, v3 = T0 + timedelta(minutes=35), T0 + timedelta(minutes=80)
    _card("P100", inbox / "IMG_0001.jpg", T0)
    _photo(REST, inbox / "IMG_0002.jpg", T0 + timedelta(minutes=1))
    _photo(SMILE, inbox / "IMG_0003.jpg", T0 + timedelta(minutes=2))
    _photo(FRONTAL, inbox / "IMG_0004.jpg", T0 + timedelta(minutes=3))
    _card("id=P200; name=Doe^Jane; birth=2012-04-01", inbox / "IMG_0005.jpg", v2)
    _photo(REST, inbox / "IMG_0006.jpg", v2 + timedelta(minutes=1))
    _photo(FRONTAL, inbox / "IMG_0007.jpg", v2 + timedelta(minutes=2))  # no smile: left out
    _photo(REST, inbox / "IMG_0008.jpg", v3)
    _photo(SMILE, inbox / "IMG_0009.jpg", v3 + timedelta(minutes=1))
    _photo(FRONTAL, inbox / "IMG_0010.jpg", v3 + timedelta(minutes=2))
    _photo(SMILE, inbox / "IMG_0011.jpg", v3 + timedelta(minutes=3))  # the smile twice
    _card("https://example.org/poster", inbox / "IMG_0012.jpg", v3 + timedelta(minutes=4))  # no card
    protocols = {
        "0002": "EV15",
        "0003": "EV19",
        "0004": "IV07",
        "0006": "EV15",
        "0007": "IV07",
        "0008": "EV15",
        "0009": "EV19",
        "0010": "IV07",
        "0011": "EV19",
    }
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,Modality,Protocol\nIMG_0012.jpg,XC,\n"
        + "".join(f"IMG_{k}.jpg,XC,{v}\n" for k, v in protocols.items())
    )
    records = tmp_path / "records.toml"
    records.write_text(
        'name = "short"\n'
        '[[views]]\nname = "frontal at rest"\nprotocols = ["EV15", "EV17"]\n'
        '[[views]]\nname = "frontal smiling"\nprotocols = ["EV19"]\n'
        '[[views]]\nname = "intraoral frontal"\nprotocols = ["IV07"]\n'
    )
    settings = ConvertSettings(
        inputs=[inbox],
        output=tmp_path / "out",
        manifest=manifest,
        use_models=False,
        jobs=1,
        records=records,
        require_complete=True,
    )
    summary = run_convert(settings)
    by_rel = {r.rel: r for r in summary.results}
    assert {r: (by_rel[r].status, by_rel[r].reason) for r in ("IMG_0001.jpg", "IMG_0005.jpg")} == {
        "IMG_0001.jpg": ("ignored", "patient-card"),
        "IMG_0005.jpg": ("ignored", "patient-card"),
    }
    # The third visit has no card: its patient is a person's to say, nothing is guessed.
    third = [f"IMG_{n:04d}.jpg" for n in range(8, 13)]
    assert {(str(by_rel[r].status), by_rel[r].reason, by_rel[r].message) for r in third} == {
        (
            "review",
            "visit-without-patient",
            "visit without a patient card: say whose it is (visit of 2026-03-02 10:20:00, 5 photographs)",
        )
    }
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp_path / "out").rglob("*.dcm")]
    assert len(datasets) == 5  # the two cards are not converted, the third visit waits
    studies: dict[str, set[str]] = {}
    for ds in datasets:
        studies.setdefault(str(ds.StudyInstanceUID), set()).add(str(ds.PatientID))
    assert sorted(tuple(sorted(v)) for v in studies.values()) == [("P100",), ("P200",)]
    jane = [ds for ds in datasets if ds.PatientID == "P200"]
    assert {(str(ds.PatientName), ds.PatientBirthDate) for ds in jane} == {("Doe^Jane", "20120401")}
    assert len(jane) == 2
    report = run_report(tmp_path / "out")
    cards = [f for f in report["files"] if f["reason"] == "patient-card"]
    assert len(cards) == 2, report.keys()
    visits = {v["patient_id"]: v for v in report["visits"]}
    assert sorted(visits) == ["P100", "P200"]
    assert visits["P200"]["missing"] == ["frontal smiling"]
    assert visits["P200"]["present"] == ["frontal at rest", "intraoral frontal"]
    assert visits["P200"]["photos"] == 2 and visits["P200"]["first"] == "2026-03-02T09:36:00"
    assert visits["P100"]["missing"] == []
    assert {v["study_uid"] for v in visits.values()} == set(studies)
    lines = [incomplete_line(v) for v in summary.visits if v["missing"]]
    assert lines == ["visit 2026-03-02 09:36 (P200, 2 photos): missing frontal smiling"]
    assert summary.exit_code == ExitCode.SOME_FAILED
    assert report["exit_code"] == 4
    review = (tmp_path / "out" / "orthovision-review.csv").read_text()
    assert review.count("visit-without-patient") == 5

    # A person names one photograph of the third visit: `review --apply` converts all of it.
    out = tmp_path / "out"
    one = by_rel["IMG_0009.jpg"]
    DecisionBook(out).save([clean(Decision(one.path, one.content_hash, decided_tags="", patient_id="P300"))])
    only = applicable_inputs(out)
    assert only == {one.path}
    again = run_convert(settings, only=only)  # with the cards and the rest of the visit
    assert {r.rel: str(r.status) for r in again.results if r.rel in third} == dict.fromkeys(
        third, "converted"
    )
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in out.rglob("*.dcm")]
    carol = [ds for ds in datasets if ds.PatientID == "P300"]
    assert len(datasets) == 10 and len(carol) == 5 and len({ds.StudyInstanceUID for ds in carol}) == 1
    assert carol[0].StudyInstanceUID not in studies
    visits = {v["patient_id"]: v for v in again.visits}
    assert visits["P300"]["missing"] == [] and visits["P300"]["duplicated"] == ["frontal smiling"]
    # Everything is settled now (P200's visit, not touched by this run, is not checked again).
    assert again.exit_code == ExitCode.OK and sum(r.status == "review" for r in again.results) == 0
    assert sorted(visits) == ["P300"]


def test_two_different_cards_before_one_visit_send_it_to_review(tmp_path: Path) -> None:
    inbox = tmp_path / "DCIM"
    inbox.mkdir()
    _card("P1", inbox / "IMG_0001.jpg", T0)
    _card("P2", inbox / "IMG_0002.jpg", T0 + timedelta(minutes=1))
    _photo(REST, inbox / "IMG_0003.jpg", T0 + timedelta(minutes=2))
    _photo(SMILE, inbox / "IMG_0004.jpg", T0 + timedelta(minutes=3))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,Modality,Protocol\nIMG_0003.jpg,XC,EV15\nIMG_0004.jpg,XC,EV19\n")
    settings = ConvertSettings(
        inputs=[inbox], output=tmp_path / "out", manifest=manifest, use_models=False, jobs=1
    )
    summary = run_convert(settings)
    got = {r.rel: (str(r.status), r.reason) for r in summary.results}
    assert got == {
        "IMG_0001.jpg": ("ignored", "patient-card"),
        "IMG_0002.jpg": ("ignored", "patient-card"),
        "IMG_0003.jpg": ("review", "patient-card-conflict"),
        "IMG_0004.jpg": ("review", "patient-card-conflict"),
    }
    assert summary.exit_code == ExitCode.SOME_FAILED
    assert not list((tmp_path / "out").rglob("*.dcm"))
    review = (tmp_path / "out" / "orthovision-review.csv").read_text()
    assert review.count("patient-card-conflict") == 2


def test_a_photo_added_later_joins_its_cards_visit(tmp_path: Path) -> None:
    inbox = tmp_path / "DCIM"
    inbox.mkdir()
    _card("P1", inbox / "IMG_0001.jpg", T0)
    _photo(REST, inbox / "IMG_0002.jpg", T0 + timedelta(minutes=2))

    def run() -> list[tuple[str, str, str]]:
        settings = ConvertSettings(
            inputs=[inbox], output=tmp_path / "out", use_models=False, jobs=1, labels={"modality": "XC"}
        )
        assert run_convert(settings).exit_code == ExitCode.OK
        found = [pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp_path / "out").rglob("*.dcm")]
        return sorted((str(ds.ContentTime)[:4], ds.PatientID, ds.StudyInstanceUID) for ds in found)

    first = run()
    _photo(FRONTAL, inbox / "IMG_0003.jpg", T0 + timedelta(minutes=4))
    second = run()  # the card is read again: the new photo is P1's, in the same study
    assert second[0] == first[0] and len(second) == 2
    assert second[1][:2] == ("0904", "P1") and second[1][2] == first[0][2]
