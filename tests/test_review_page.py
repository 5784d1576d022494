"""The review page in a real headless Chromium (Debian's chromium + chromium-driver, selenium):
previews shown, a view and a rotation changed with keyboard and mouse, a bulk decision, the
decisions file checked, then a real `convert` writes the person's labels (read back with pydicom).

Set REVIEW_SCREENSHOT=docs/review-page.png to refresh the screenshot in the docs.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SAMPLE, require_tool
from testdata import DATA, UNSURE_FACE, run_report

from orthovision_cli.review.server import ReviewApp, make_server

pytestmark = pytest.mark.slow

CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,950",
)


def _convert(inbox: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "orthovision_cli",
            "convert",
            str(inbox),
            "-o",
            str(out),
            "-j",
            "1",
            "--no-fsync",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def reviewed(tmp_path: Path) -> tuple[Path, Path]:
    """An output folder with two files awaiting review (an unsure view, an unsure body part)."""
    inbox = tmp_path / "inbox"
    (inbox / "photos").mkdir(parents=True)
    (inbox / "radiographs").mkdir()
    shutil.copy(UNSURE_FACE, inbox / "photos")
    # A neutral name: the name hint "bitewing" would settle its protocol; the pixels leave
    # bitewing vs periapical to a person (docs/models.md), so it goes to review.
    shutil.copy(SAMPLE / "radiographs" / "bitewing.png", inbox / "radiographs" / "film.png")
    # Sure of all four tags (a limb or chest film would wait: film or digital is not told).
    shutil.copy(DATA / "radiographs/panoramic/basic_panoramic_radiograph.jpg", inbox / "radiographs")
    out = tmp_path / "out"
    proc = _convert(inbox, out)
    assert proc.returncode == 4, proc.stderr
    rows = list(csv.DictReader((out / "orthovision-review.csv").open()))
    assert [Path(r["input"]).name for r in rows] == ["082_08.jpg", "film.png"]
    return inbox, out


@pytest.fixture
def server(reviewed: tuple[Path, Path]) -> Iterator[str]:
    _, out = reviewed
    app = ReviewApp(out, who="tester")
    httpd = make_server(app, 0)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    yield app.page_url(httpd.server_address[1])  # the token once, then the page's cookie
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = require_tool("chromium")
    driver_exe = require_tool("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    driver = webdriver.Chrome(options=opts, service=Service(driver_exe))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(cond: Any, what: str, timeout: float = 20) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _decisions(out: Path) -> dict[str, dict[str, str]]:
    path = out / "orthovision-decisions.csv"
    if not path.exists():
        return {}
    return {Path(r["input"]).name: r for r in csv.DictReader(path.open())}


def test_review_page_decisions_convert(reviewed: tuple[Path, Path], server: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    inbox, out = reviewed
    browser.get(server)
    _wait(lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the page")
    rows = browser.find_elements(By.CSS_SELECTOR, "#list li")
    assert [r.text for r in rows] == ["photos/082_08.jpg", "radiographs/film.png"]

    # Previews: every image in the list and the one in detail decoded by the browser.
    _wait(
        lambda: browser.execute_script(
            "return [...document.querySelectorAll('#list img, #preview')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        ),
        "the previews",
    )
    assert browser.find_element(By.ID, "rel").text == "photos/082_08.jpg"
    proposed = browser.find_element(By.CSS_SELECTOR, '#tags tr[data-tag="protocol"]').text
    # The confidence shown is the one the run reported for that file, as a percentage.
    report = run_report(out)
    (face,) = [f for f in report["files"] if f["input"].endswith("082_08.jpg")]
    percent = f"{round(face['labels']['protocol']['confidence'] * 100)}%"
    assert "EV19" in proposed and "local:faces" in proposed and percent in proposed, (proposed, percent)

    # A view by keyboard: "2" focuses the view picker, typing selects an option by its text.
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("2")
    picker = browser.switch_to.active_element
    assert picker.get_attribute("id") == "pick-protocol"
    picker.send_keys("IV07")
    _wait(lambda: _decisions(out).get("082_08.jpg", {}).get("protocol") == "IV07", "the view decision")
    picker.send_keys(Keys.ESCAPE)

    # A rotation by keyboard (r: 90 clockwise) and by mouse (the rotate-right button: 180).
    browser.find_element(By.TAG_NAME, "body").send_keys("r")
    _wait(lambda: _decisions(out)["082_08.jpg"]["orientation"] == "90", "the keyboard rotation")
    # The page has shown that save (its status line) before the mouse goes to the button.
    _wait(lambda: "saved" in browser.find_element(By.ID, "saved").text, "the saved status")
    _wait(lambda: browser.find_element(By.ID, "orientation-text").text == "orientation 90", "the turn shown")
    button = browser.find_element(By.ID, "rot-right")
    _wait(lambda: button.is_displayed() and button.is_enabled(), "the rotate button")
    button.click()
    _wait(
        lambda: browser.find_element(By.ID, "orientation-text").text == "orientation 180", "the click taken"
    )
    _wait(lambda: _decisions(out)["082_08.jpg"]["orientation"] == "180", "the mouse rotation")
    # Turned upside down on screen (once the short animation has run).
    _wait(
        lambda: (
            browser.find_element(By.ID, "preview")
            .value_of_css_property("transform")
            .startswith("matrix(-1, ")
        ),
        "the turned preview",
    )
    if os.environ.get("REVIEW_SCREENSHOT"):
        browser.save_screenshot(os.environ["REVIEW_SCREENSHOT"])

    # Enter accepts and moves to the next undecided file.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
    _wait(lambda: browser.find_element(By.ID, "rel").text == "radiographs/film.png", "the next file")

    # Select many (here: the one left) with the mouse, set one value for all of them.
    browser.find_elements(By.CSS_SELECTOR, "#list li input")[1].click()
    Select(browser.find_element(By.ID, "bulk-tag")).select_by_value("body_part")
    Select(browser.find_element(By.ID, "bulk-value")).select_by_value("JAW")
    browser.find_element(By.ID, "bulk-apply").click()
    _wait(lambda: _decisions(out).get("film.png", {}).get("body_part") == "JAW", "the bulk decision")
    # The bulk set decided that tag alone (issue 21); Enter then confirms the rest shown.
    film = _decisions(out)["film.png"]
    assert film["decided_tags"] == "body_part" and film["modality"] == film["protocol"] == ""
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
    _wait(lambda: _decisions(out)["film.png"]["protocol"] == "BITEWING", "the film accepted")

    # Filter by state: nothing undecided is left.
    Select(browser.find_element(By.ID, "filter")).select_by_value("undecided")
    assert browser.find_elements(By.CSS_SELECTOR, "#list li") == []

    d = _decisions(out)
    assert d["082_08.jpg"]["modality"] == "XC" and d["082_08.jpg"]["decided_by"] == "tester"
    assert d["film.png"]["protocol"] == "BITEWING" and d["film.png"]["modality"] == "IO"
    assert len(d["082_08.jpg"]["sha256"]) == 64

    # The next convert into the same output writes the person's labels.
    proc = _convert(inbox, out)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "orthovision-review.csv").exists()
    import pydicom

    photo = pydicom.dcmread(next(out.rglob("082_08.dcm")))
    assert str(photo.ProtocolName) == "Orthodontic Intraoral Series"  # the series' family
    provenance = str(photo.ContributingEquipmentSequence[0].ContributionDescription)
    assert "protocol=IV07 (person, 1.00)" in provenance
    assert "orientation=180 (person, 1.00)" in provenance
    # The pixels really were turned upside down (DCT-domain rotation of the JPEG).
    from PIL import Image

    src = np.asarray(Image.open(inbox / "photos" / "082_08.jpg").convert("RGB"), dtype=np.int16)
    # pydicom 3 gives RGB for a YBR JPEG already (as_rgb): a lossless DCT turn keeps YBR_FULL_422
    # (this 640x640 photograph is whole MCUs), a re-encoded one may be stored as RGB.
    written = photo.pixel_array.astype(np.int16)
    assert np.abs(written - src[::-1, ::-1]).mean() < 3 < np.abs(written - src).mean()
    radiograph = pydicom.dcmread(next(out.rglob("film.dcm")))
    assert radiograph.BodyPartExamined == "JAW"
    assert "body_part=JAW (person, 1.00)" in str(
        radiograph.ContributingEquipmentSequence[0].ContributionDescription
    )


def _many_awaiting(out: Path, folder: Path, n: int) -> list[str]:
    """Make `out` list n distinct real photographs for review: the sample's 005_08.jpg (a camera
    file with an EXIF thumbnail) with a different trailer after its EOI marker each (decoders
    ignore it; the content hash changes), state rows cloned from the real convert's row for the
    face that waits for review, 082_08.jpg (so the page gets real labels)."""
    import hashlib
    import sqlite3

    data = (SAMPLE / "photos" / "005_08.jpg").read_bytes()
    db = sqlite3.connect(out / ".orthovision" / "state.sqlite")
    cols = [r[1] for r in db.execute("PRAGMA table_info(inputs)")]
    row = dict(
        zip(cols, db.execute("SELECT * FROM inputs WHERE rel LIKE '%082_08.jpg'").fetchone(), strict=True)
    )
    reason = next(
        r for r in csv.DictReader((out / "orthovision-review.csv").open()) if r["input"] == row["path"]
    )
    inputs = []
    for i in range(n):
        path = folder / f"day{i // 50}" / f"DSC_{i:04d}.JPG"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = data + f"copy {i}".encode()
        path.write_bytes(body)
        st = path.stat()
        row.update(
            path=str(path),
            rel=f"{path.parent.name}/{path.name}",
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            content_hash=hashlib.sha256(body).hexdigest(),
        )
        db.execute(f"INSERT INTO inputs VALUES ({','.join('?' * len(cols))})", [row[c] for c in cols])
        inputs.append(str(path))
    db.commit()
    db.close()
    with (out / "orthovision-review.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["input", "reason", "message"])
        w.writerows([p, reason["reason"], reason["message"]] for p in inputs)
    return inputs


@contextlib.contextmanager
def _serving(app: ReviewApp) -> Iterator[str]:
    httpd = make_server(app, 0)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    try:
        yield app.page_url(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


ALL_THUMBS_LOADED = (
    "return [...document.querySelectorAll('#list img')].every(i => i.complete && i.naturalWidth > 0)"
)
FIRST_USABLE = (
    "return document.body.dataset.ready === '1' && document.getElementById('preview').complete"
    " && document.getElementById('preview').naturalWidth > 0"
)


def _scroll_to_end(browser: Any) -> None:
    """Scroll the list a window at a time, as a person would (lazy thumbnails load on the way)."""
    _wait(
        lambda: browser.execute_script(
            "const n = document.querySelector('nav'); n.scrollTop += n.clientHeight;"
            "return n.scrollTop + n.clientHeight >= n.scrollHeight - 1"
        ),
        "the end of the list",
        timeout=120,
    )


def test_many_files_usable_before_previews_then_cached(
    reviewed: tuple[Path, Path], browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.by import By

    from orthovision_cli.review import preview

    _, out = reviewed
    n = 120
    inputs = _many_awaiting(out, tmp_path / "many", n)
    # Fault injection: every preview but the first file's waits until released, so the page
    # must be usable while the rest are still being made.
    gate = threading.Event()
    real_render, real_exif = preview.render_jpegs, preview.exif_thumb_jpeg

    # The server reads the file it opened and checked (safefs): compare files, not names.
    def gated_render(path: Path, sides: Any) -> dict[int, bytes]:
        if not os.path.samefile(path, inputs[0]):
            gate.wait(60)
        return real_render(path, sides)

    def gated_exif(path: Path, side: int) -> bytes | None:
        if not os.path.samefile(path, inputs[0]):
            gate.wait(60)
        return real_exif(path, side)

    monkeypatch.setattr(preview, "render_jpegs", gated_render)
    monkeypatch.setattr(preview, "exif_thumb_jpeg", gated_exif)
    app = ReviewApp(out, who="tester")
    try:
        with _serving(app) as url:
            browser.get(url)
            _wait(lambda: browser.execute_script(FIRST_USABLE), "the first file, while the rest wait", 60)
            assert len(browser.find_elements(By.CSS_SELECTOR, "#list li")) == n
            assert browser.find_element(By.ID, "rel").text == "day0/DSC_0000.JPG"
            made = app.previews.decodes + app.previews.exif_thumbs
            assert made <= 2  # the first file's preview (and its thumbnail): nothing else yet
            gate.set()

            # A keyboard decision reaches the decisions file; the page moves to the next file.
            browser.find_element(By.TAG_NAME, "body").send_keys("a")
            _wait(lambda: "DSC_0000.JPG" in _decisions(out), "the decision on disk")
            assert _decisions(out)["DSC_0000.JPG"]["protocol"] == "EV19"
            _wait(lambda: browser.find_element(By.ID, "rel").text == "day0/DSC_0001.JPG", "the next file")
            _wait(lambda: browser.execute_script(FIRST_USABLE), "the next file's preview")

            # Lazy: only thumbnails near the window were asked for, not all n.
            assert app.previews.exif_thumbs + app.previews.decodes < n
            _scroll_to_end(browser)
            _wait(lambda: browser.execute_script(ALL_THUMBS_LOADED), "all thumbnails", 120)
    finally:
        gate.set()
    cache = out / ".orthovision" / "previews"
    assert len(list(cache.glob("*/*-thumb-*.jpg"))) == n
    assert not list(cache.glob("*/.*"))  # written atomically: no temporary file left
    # This camera file's EXIF thumbnail serves the list: the only pictures decoded are those
    # shown in detail (two files and the next one's prefetch; each makes its thumbnail too).
    assert app.previews.decodes <= 3 and app.previews.exif_thumbs >= n - app.previews.decodes

    # A restarted server (another port, so nothing from the browser's cache): every preview
    # the page shows comes from the disk cache, none is made again.
    again = ReviewApp(out, who="tester")
    with _serving(again) as url:
        browser.get(url)
        _wait(lambda: browser.execute_script(FIRST_USABLE), "the page again", 60)
        _scroll_to_end(browser)
        _wait(lambda: browser.execute_script(ALL_THUMBS_LOADED), "all thumbnails again", 120)
        assert again.previews.decodes == 0 and again.previews.exif_thumbs == 0


# The page at 1024x700, as a laptop shows it: the picture, the label table and Accept without
# scrolling and without a horizontal scrollbar; a counter that cannot be misread; the
# alternatives of an unsure view; one order of files from run to run (issue 27).
def test_everything_to_decide_fits_at_1024x700(
    reviewed: tuple[Path, Path], server: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    browser.set_window_size(1024, 700)
    browser.get(server)
    _wait(lambda: browser.find_element(By.ID, "rel").text, "the first file")
    _wait(lambda: browser.execute_script("return document.getElementById('preview').complete"), "the preview")
    inner_w, inner_h, scroll_w = browser.execute_script(
        "return [window.innerWidth, window.innerHeight, document.documentElement.scrollWidth]"
    )
    assert scroll_w <= inner_w, (scroll_w, inner_w)  # no horizontal scrollbar
    accept = browser.find_element(By.ID, "accept").rect
    table = browser.find_element(By.ID, "tags").rect
    assert accept["y"] + accept["height"] <= inner_h, (accept, inner_h)
    assert table["x"] + table["width"] <= inner_w, (table, inner_w)
    counts = browser.find_element(By.ID, "counts").text
    assert counts.startswith("2 file(s) listed: 2 to decide, 0 decided"), counts
    # The unsure face: its other view is offered with its probability.
    protocol = browser.find_element(By.CSS_SELECTOR, '#tags tr[data-tag="protocol"]').find_elements(
        By.TAG_NAME, "td"
    )
    assert "EV19" in protocol[3].text or "EV15" in protocol[3].text, [c.text for c in protocol]


def test_the_review_list_keeps_one_order(reviewed: tuple[Path, Path]) -> None:
    _, out = reviewed
    rels = [r["input"] for r in csv.DictReader((out / "orthovision-review.csv").open())]
    assert rels == sorted(rels, key=lambda p: Path(p).relative_to(Path(p).parents[1]).as_posix())
