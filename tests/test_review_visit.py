"""The review page names a whole visit with one action (issue 26), in a real headless Chromium at
1024x700: a camera card whose second visit has no patient card waits for its patient; one
Patient ID typed on the page is saved for each of its photographs, a run of files ticked with
Shift+click is named "one patient", and `review OUT --apply` writes them into the instances
(read back with pydicom)."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from test_patient_cards import FRONTAL, REST, SMILE, T0, _card, _photo
from test_review_page import _serving, _wait, browser  # noqa: F401 (the fixture)
from testdata import orthovision

from orthovision_cli.review.server import ReviewApp

pytestmark = pytest.mark.slow


def test_one_patient_for_a_whole_visit(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    inbox, out = tmp_path / "DCIM", tmp_path / "out"
    inbox.mkdir()
    v2 = T0 + timedelta(minutes=35)
    _card("P100", inbox / "IMG_0001.jpg", T0)
    _photo(REST, inbox / "IMG_0002.jpg", T0 + timedelta(minutes=1))
    _photo(REST, inbox / "IMG_0003.jpg", v2)  # no card before this visit
    _photo(SMILE, inbox / "IMG_0004.jpg", v2 + timedelta(minutes=1))
    _photo(FRONTAL, inbox / "IMG_0005.jpg", v2 + timedelta(minutes=2))
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,Modality,Protocol\nIMG_0002.jpg,XC,EV15\nIMG_0003.jpg,XC,EV15\n"
        "IMG_0004.jpg,XC,EV19\nIMG_0005.jpg,XC,IV07\n"
    )
    proc = orthovision("convert", str(inbox), "-o", str(out), "--manifest", str(manifest), "--no-models")
    assert proc.returncode == 4, proc.stderr  # the visit waits for its patient
    with (out / "orthovision-review.csv").open(newline="") as f:
        assert {r["reason"] for r in csv.DictReader(f)} == {"visit-without-patient"}

    with _serving(ReviewApp(out, who="tester")) as url:
        browser.set_window_size(1024, 700)
        browser.get(url)
        _wait(lambda: browser.find_element(By.ID, "rel").text, "the first file")
        assert browser.find_element(By.ID, "rel").text == "IMG_0003.jpg"
        panel = browser.find_element(By.ID, "visit")
        _wait(panel.is_displayed, "the visit's panel")
        assert "Patient of this whole visit (3 file(s))" in panel.text
        # The visit's records grid beside the picture: its photographs by view, the rest missing.
        grid = {
            td.get_attribute("data-view"): td
            for td in browser.find_elements(By.CSS_SELECTOR, "#visit-grid td")
        }
        assert len(grid) == 9
        shown = {view for view, td in grid.items() if td.find_elements(By.TAG_NAME, "img")}
        assert shown == {"frontal at rest", "frontal smiling", "intraoral frontal"}
        missing = {view for view, td in grid.items() if "missing" in (td.get_attribute("class") or "")}
        assert missing == set(grid) - shown - {"other"}
        _wait(
            lambda: browser.execute_script(
                "return [...document.querySelectorAll('#visit-grid img')].every(i => i.complete && i.naturalWidth > 0)"
            ),
            "the grid's thumbnails",
        )
        grid["intraoral frontal"].find_element(By.TAG_NAME, "img").click()  # opens that photograph
        _wait(lambda: browser.find_element(By.ID, "rel").text == "IMG_0005.jpg", "the clicked photograph")
        field = browser.find_element(By.ID, "visit-patient")
        field.send_keys("P300")
        browser.find_element(By.ID, "visit-name").click()  # one action for the whole visit
        _wait(
            lambda: "0 to decide, 3 decided" in browser.find_element(By.ID, "counts").text,
            "the visit decided",
        )
        assert "visit named P300: 3 file(s)" in browser.find_element(By.ID, "saved").text
        assert "is P300's" in panel.text
        # Everything still fits at 1024x700: no horizontal scrollbar, Accept on screen.
        inner_w, inner_h, scroll_w = browser.execute_script(
            "return [window.innerWidth, window.innerHeight, document.documentElement.scrollWidth]"
        )
        assert scroll_w <= inner_w
        accept = browser.find_element(By.ID, "accept").rect
        assert accept["y"] + accept["height"] <= inner_h, (accept, inner_h)
        # An empty ID is refused with a reason, nothing saved.
        field.clear()
        browser.find_element(By.ID, "visit-name").click()
        _wait(lambda: "give the visit's Patient ID" in browser.find_element(By.ID, "saved").text, "refusal")
        # "These are one patient": a run ticked in the list (click, then Shift+click) is named.
        boxes = {
            li.find_element(By.CLASS_NAME, "name").text: li.find_element(By.TAG_NAME, "input")
            for li in browser.find_elements(By.CSS_SELECTOR, "#list li")
        }
        boxes["IMG_0004.jpg"].click()
        ActionChains(browser).key_down(Keys.SHIFT).click(boxes["IMG_0005.jpg"]).key_up(Keys.SHIFT).perform()
        assert browser.find_element(By.ID, "bulk-count").text == "2 selected"
        browser.find_element(By.ID, "bulk-patient").send_keys("P400")
        browser.find_element(By.ID, "bulk-patient-apply").click()
        _wait(
            lambda: "patient of the selected P400: 2 file(s)" in browser.find_element(By.ID, "saved").text,
            "the run named",
        )

    with (out / "orthovision-decisions.csv").open(newline="") as f:
        rows = {Path(r["input"]).name: r for r in csv.DictReader(f)}
    assert {n: (r["patient_id"], r["decided_tags"]) for n, r in rows.items()} == {
        "IMG_0003.jpg": ("P300", ""),
        "IMG_0004.jpg": ("P400", ""),
        "IMG_0005.jpg": ("P400", ""),
    }
    proc = orthovision("review", str(out), "--apply")
    assert proc.returncode == 0, proc.stderr
    written = [pydicom.dcmread(p, stop_before_pixels=True) for p in out.rglob("*.dcm")]
    by_patient: dict[str, list[pydicom.Dataset]] = {}
    for ds in written:
        by_patient.setdefault(str(ds.PatientID), []).append(ds)
    assert {k: len(v) for k, v in by_patient.items()} == {"P100": 1, "P300": 1, "P400": 2}
    assert len({ds.StudyInstanceUID for ds in by_patient["P400"]}) == 1
    assert by_patient["P300"][0].StudyInstanceUID != by_patient["P400"][0].StudyInstanceUID
    assert str(by_patient["P300"][0].StudyDescription) == "Visit 2026-03-02 09:35"
