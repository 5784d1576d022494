"""The review page asks film or digital once for a folder (issue 20), in a real headless
Chromium at 1024 x 700: 30 scanned cephalograms awaiting review for their modality give one
question; one click settles all 30 (the list marks them), the answer is kept in
OUT/orthovision-settings.toml, no per-file decision is written, and `review OUT --apply` then
writes all 30 as RG (dciodvfy-clean)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import REPO, dciodvfy
from test_batch_facts import variant
from test_review_page import CHROME_FLAGS, _wait

from orthovision_cli.answers import load as load_answers
from orthovision_cli.review.server import ReviewApp, make_server

pytestmark = pytest.mark.slow
FILMS = 30


def _orthovision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def films(tmp_path: Path) -> tuple[Path, Path]:
    inbox, out = tmp_path / "films", tmp_path / "out"
    (inbox / "1998").mkdir(parents=True)
    for i in range(FILMS):
        variant(
            REPO / "tests" / "data" / "classify" / "ceph_lateral.jpg", inbox / "1998" / f"c{i:02d}.jpg", i
        )
    proc = _orthovision("convert", str(inbox), "-o", str(out), "-j", "2", "--no-fsync")
    assert proc.returncode in (4, 5), proc.stderr  # all wait for a person (exit 4 with issue 21)
    return inbox, out


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from conftest import require_tool
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = require_tool("chromium")
    for flag in CHROME_FLAGS:
        opts.add_argument(flag if not flag.startswith("--window-size") else "--window-size=1024,700")
    opts.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    driver = webdriver.Chrome(options=opts, service=Service(require_tool("chromedriver")))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.external
def test_one_question_settles_a_folder_of_films(films: tuple[Path, Path], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    inbox, out = films
    app = ReviewApp(out, who="tester")
    httpd = make_server(app, 0)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        browser.get(app.page_url(httpd.server_address[1]))  # the token once, then a cookie
        _wait(
            lambda: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the page"
        )
        _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#batch-questions p.question"), "the question")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#list li")) == FILMS
        questions = browser.find_elements(By.CSS_SELECTOR, "#batch-questions p.question")
        assert len(questions) == 1  # one question for 30 files
        text = questions[0].text
        assert f"Are the radiographs in {inbox} scanned films or digital?" in text
        assert f"{FILMS} file(s) wait for this; {FILMS} need nothing else" in text
        button = questions[0].find_element(By.CSS_SELECTOR, "button.answer-film")
        assert button.is_displayed()  # within the 1024 x 700 window
        assert button.rect["y"] + button.rect["height"] <= 700
        button.click()
        _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#batch-questions p.answered"), "the answer")
        assert not browser.find_elements(By.CSS_SELECTOR, "#batch-questions p.question")
        answered = browser.find_element(By.CSS_SELECTOR, "#batch-questions p.answered").text
        assert "scanned films (RG), answered by tester" in answered and f"{FILMS} of {FILMS}" in answered
        _wait(
            lambda: len(browser.find_elements(By.CSS_SELECTOR, "#list li.settled")) == FILMS,
            "the list marked",
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    answers = load_answers(out)
    assert {(a.folder, a.acquisition, a.answered_by) for a in answers.values()} == {
        (str(inbox), "film", "tester")
    }
    assert not (out / "orthovision-decisions.csv").exists()  # a fact, not 30 decisions

    proc = _orthovision("review", str(out), "--apply", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == FILMS
    assert {str(pydicom.dcmread(p).Modality) for p in written} == {"RG"}
    assert dciodvfy(written[0])[0] == []


def test_the_answer_endpoint_takes_only_folders_it_asked_about(films: tuple[Path, Path]) -> None:
    from orthovision_cli.errors import UsageError

    inbox, out = films
    app = ReviewApp(out, who="tester")
    got = app.batch_json()
    assert [q["folder"] for q in got["questions"]] == [str(inbox)] and got["settled"] == []
    bad: Any
    for bad in (
        {"folder": "/etc", "acquisition": "film"},
        {"folder": str(inbox), "acquisition": "paper"},
        [],
    ):
        with pytest.raises(UsageError):
            app.answer(bad)
    done = app.answer({"folder": str(inbox), "acquisition": "digital"})
    assert done["questions"] == [] and len(done["settled"]) == FILMS
    # A later convert applies it without the page: all 30 as DX.
    proc = _orthovision("convert", str(inbox), "-o", str(out), "-j", "2", "--no-fsync")
    assert proc.returncode == 0, proc.stderr
    assert {str(pydicom.dcmread(p).Modality) for p in out.rglob("*.dcm")} == {"DX"}
