"""The review page trusts nothing (issue 24), over real HTTP on 127.0.0.1: any number of pages
and `review` processes on one OUT keep every decision; nothing outside OUT (or an input the
state knows) is read, previewed or deleted, and nothing blocks on a FIFO; every route needs the
page's token; a foreign Host or Origin is refused; hostile requests are JSON errors, never a
traceback, a hang or a stalled backlog."""

from __future__ import annotations

import csv
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLE
from testdata import DATA, UNSURE_FACE

from orthovision_cli.review.server import ReviewApp, make_server

PHOTO = UNSURE_FACE  # waits for a person


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real convert (a photograph with an unsure view awaits review); tests copy its OUT."""
    base = tmp_path_factory.mktemp("converted")
    inbox = base / "inbox"
    inbox.mkdir()
    shutil.copy(PHOTO, inbox)
    # Sure of all four tags: converted (a run that converts nothing exits 5).
    shutil.copy(DATA / "radiographs/panoramic/basic_panoramic_radiograph.jpg", inbox)
    out = base / "out"
    proc = _cli("convert", str(inbox), "-o", str(out), "-j", "1", "--no-fsync")
    assert proc.returncode == 4, proc.stderr
    return out


@pytest.fixture
def out(converted: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(converted, copy, symlinks=True)
    return copy


def _add_awaiting(out: Path, folder: Path, n: int) -> list[str]:
    """n more distinct photographs awaiting review: the photo with a different trailer each
    (decoders ignore it), state rows cloned from the real one, listed in the review CSV."""
    data = PHOTO.read_bytes()
    db = sqlite3.connect(out / ".orthovision" / "state.sqlite")
    cols = [r[1] for r in db.execute("PRAGMA table_info(inputs)")]
    row = dict(zip(cols, db.execute("SELECT * FROM inputs WHERE status = 'review'").fetchone(), strict=True))
    listed = list(csv.DictReader((out / "orthovision-review.csv").open(newline="")))
    folder.mkdir(parents=True, exist_ok=True)
    added = []
    for i in range(n):
        path = folder / f"IMG_{i:04d}.JPG"
        body = data + f"copy {i}".encode()
        path.write_bytes(body)
        st = path.stat()
        row.update(
            path=str(path),
            rel=path.name,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            content_hash=hashlib.sha256(body).hexdigest(),
        )
        db.execute(f"INSERT INTO inputs VALUES ({','.join('?' * len(cols))})", [row[c] for c in cols])
        added.append(str(path))
        listed.append({**listed[0], "input": str(path)})
    db.commit()
    db.close()
    with (out / "orthovision-review.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(listed[0]))
        w.writeheader()
        w.writerows(listed)
    return added


@pytest.fixture
def served(out: Path) -> Iterator[tuple[ReviewApp, int]]:
    app = ReviewApp(out, who="tester")
    httpd = make_server(app, 0)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    yield app, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _http(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 20,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _decision(inp: str, view: str) -> bytes:
    return json.dumps({"decisions": [{"input": inp, "modality": "XC", "protocol": view}]}).encode()


# ------------------------------------------------------------------ decisions: none lost


class Review:
    """A real `orthovision review OUT --no-browser` process; its address carries the token."""

    def __init__(self, out: Path, who: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orthovision_cli", "review", str(out), "--no-browser", "--who", who],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/(?:\?token=(\S+))?", line)
        assert m, line
        self.port = int(m.group(1))
        self.token = m.group(2) or self._token_from_page()

    def _token_from_page(self) -> str:  # an address without it (as before issue 24)
        page = _http(self.port, "GET", "/")[2].decode()
        found = re.search(r'name="orthovision-token" content="([^"]+)"', page)
        return found.group(1) if found else ""

    def get(self, path: str) -> Any:
        status, _, body = _http(self.port, "GET", path, headers={"X-Orthovision-Token": self.token})
        assert status == 200, body
        return json.loads(body)

    def decide(self, inp: str, view: str) -> int:
        headers = {"X-Orthovision-Token": self.token, "Content-Type": "application/json"}
        return _http(self.port, "POST", "/api/decide", _decision(inp, view), headers)[0]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


def test_two_review_processes_keep_every_decision(out: Path, tmp_path: Path) -> None:
    inputs = _add_awaiting(out, tmp_path / "more", 23)
    first, other = Review(out, "anna"), Review(out, "ben")
    try:
        # Two processes, four pages' worth of concurrent saves, each file decided once.
        views = ["EV01", "EV02", "IV07", "EV08"]
        with ThreadPoolExecutor(8) as pool:
            codes = list(
                pool.map(
                    lambda i: (first if i % 2 else other).decide(inputs[i], views[i % 4]), range(len(inputs))
                )
            )
        assert codes == [200] * len(inputs)
        rows = {r["input"]: r for r in csv.DictReader((out / "orthovision-decisions.csv").open(newline=""))}
        assert {i: rows[i]["protocol"] for i in inputs if i in rows} == {
            inputs[i]: views[i % 4] for i in range(len(inputs))
        }
        # A later save through one process keeps what the other saved.
        assert first.decide(inputs[0], "EV15") == 200
        assert other.decide(inputs[1], "EV17") == 200
        rows = {r["input"]: r for r in csv.DictReader((out / "orthovision-decisions.csv").open(newline=""))}
        assert len(rows) == len(inputs) and rows[inputs[0]]["protocol"] == "EV15"
        assert rows[inputs[1]]["protocol"] == "EV17" and rows[inputs[1]]["decided_by"] == "ben"
        # Each page learns of the other's decisions (what its poll and its reload read).
        for proc in (first, other):
            listed = {it["input"]: it["decision"] for it in proc.get("/api/items")["items"]}
            assert listed[inputs[0]]["protocol"] == "EV15" and listed[inputs[1]]["protocol"] == "EV17"
            polled = proc.get("/api/decisions")["decisions"]
            assert all(polled[i]["decision"] is not None for i in inputs)
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    finally:
        errors = first.stop() + other.stop()
    assert "Traceback" not in errors, errors


# ------------------------------------------------------------------ paths: nothing outside OUT


def test_prune_never_follows_a_link(out: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("keep me")
    (victim / f"{'ab' * 32}-full-v1.jpg").write_bytes(b"\xff\xd8 not a preview of ours \xff\xd9")
    cache = out / ".orthovision" / "previews"
    (cache / "ab").mkdir(parents=True)
    stale = cache / "ab" / f"{'ab' * 32}-thumb-v1.jpg"
    stale.write_bytes(b"\xff\xd8\xff\xd9")
    (cache / "zz").symlink_to(victim, target_is_directory=True)  # a linked subfolder
    (cache / "ab" / "link.jpg").symlink_to(victim / "notes.txt")  # a link inside one
    ReviewApp(out)  # prunes at start
    assert sorted(p.name for p in victim.iterdir()) == sorted(["notes.txt", f"{'ab' * 32}-full-v1.jpg"])
    assert (victim / "notes.txt").read_text() == "keep me"
    assert not stale.exists() and not (cache / "ab" / "link.jpg").is_symlink()  # its own: pruned
    # The whole cache folder a link to elsewhere: not used at all (memory only), nothing pruned.
    shutil.rmtree(cache)
    cache.symlink_to(victim, target_is_directory=True)
    app = ReviewApp(out)
    assert app.previews.folder is None and len(list(victim.iterdir())) == 2


def test_rows_the_state_does_not_know_are_not_served(
    out: Path, served: tuple[ReviewApp, int], tmp_path: Path
) -> None:
    app, port = served
    secret = tmp_path / "elsewhere" / "secret.jpg"
    secret.parent.mkdir()
    shutil.copy(SAMPLE / "photos" / "005_03.jpg", secret)
    with (out / "orthovision-review.csv").open("a", newline="") as f:
        csv.writer(f).writerow([str(secret), "review", "protocol=EV15 unsure"])
    token = {"X-Orthovision-Token": app.token}
    status, _, body = _http(port, "GET", "/api/items", headers=token)
    listed = [it["input"] for it in json.loads(body)["items"]]
    assert status == 200 and str(secret) not in listed and len(listed) == 1
    assert _http(port, "GET", "/preview/1?size=full", headers=token)[0] == 404
    status, _, body = _http(port, "POST", "/api/decide", _decision(str(secret), "EV01"), token)
    assert status == 400 and b"not awaiting review" in body


def _start_within(out: Path, seconds: float = 10) -> object:
    """ReviewApp(out) or the exception it raised; fails if it blocks."""
    result: list[object] = []

    def start() -> None:
        try:
            result.append(ReviewApp(out))
        except Exception as exc:
            result.append(exc)

    t = threading.Thread(target=start, daemon=True)
    t.start()
    t.join(seconds)
    assert result, "a FIFO in OUT blocked the start"
    return result[0]


def test_files_in_out_that_are_links_or_fifos(out: Path, tmp_path: Path) -> None:
    """The review list, the decisions or the settings of the last convert replaced by a link
    out of OUT or a FIFO: nothing read from elsewhere, nothing blocks."""
    settings = out / ".orthovision" / "convert-settings.json"
    settings.unlink()
    os.mkfifo(settings)
    elsewhere = tmp_path / "elsewhere.csv"
    shutil.copy(out / "orthovision-review.csv", elsewhere)
    (out / "orthovision-review.csv").unlink()
    (out / "orthovision-review.csv").symlink_to(elsewhere)
    app = _start_within(out)
    assert isinstance(app, ReviewApp) and app.items == []
    (out / "orthovision-review.csv").unlink()
    os.mkfifo(out / "orthovision-review.csv")
    assert _start_within(out).items == []  # type: ignore[attr-defined]
    os.mkfifo(out / "orthovision-decisions.csv")
    assert "not a regular file" in str(_start_within(out))


def test_input_that_became_a_fifo_or_a_link(out: Path, served: tuple[ReviewApp, int], tmp_path: Path) -> None:
    app, port = served
    fifo, swapped = _add_awaiting(out, tmp_path / "more", 2)
    other = tmp_path / "other.jpg"
    shutil.copy(SAMPLE / "photos" / "005_03.jpg", other)
    app.reload()
    os.unlink(fifo)
    os.mkfifo(fifo)
    os.unlink(swapped)
    os.symlink(other, swapped)  # a link swapped in since convert: not the file convert read
    token = {"X-Orthovision-Token": app.token}
    t0 = time.monotonic()
    status, _, body = _http(port, "GET", "/preview/1?size=full", headers=token, timeout=10)
    assert status == 422 and b"not a regular file" in body and time.monotonic() - t0 < 5
    status, _, body = _http(port, "GET", "/preview/2?size=thumb", headers=token, timeout=10)
    assert status == 422 and b"symbolic link" in body
    assert _http(port, "GET", "/preview/0?size=thumb", headers=token)[0] == 200


# ------------------------------------------------------------------ the token, Host, Origin


def test_every_route_needs_the_token(served: tuple[ReviewApp, int], monkeypatch: pytest.MonkeyPatch) -> None:
    app, port = served
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    routes = ["/", "/static/page.js", "/static/page.css", "/api/items", "/api/codes", "/api/decisions"]
    routes += ["/preview/0?size=thumb", "/preview/0?size=full"]
    wrong = "x" * len(app.token)
    for route in routes:
        for headers in ({}, {"X-Orthovision-Token": wrong}, {"Cookie": f"orthovision-review-{port}={wrong}"}):
            status, head, body = _http(port, "GET", route, headers=headers)
            assert status == 403 and head["content-type"] == "application/json", (route, headers)
            assert "token" in json.loads(body)["error"]
    assert app.token.encode() in compared  # compared in constant time

    # The address the tool prints: the token once, then an HttpOnly SameSite=Strict cookie.
    status, head, page = _http(port, "GET", f"/?token={app.token}")
    assert status == 200 and b"orthovision review" in page and head["cache-control"] == "no-store"
    cookie = head["set-cookie"]
    assert cookie.startswith(f"orthovision-review-{port}={app.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    assert _http(port, "GET", "/?token=" + wrong)[0] == 403
    for route in routes:
        status, head, _ = _http(port, "GET", route, headers=jar)
        assert status == 200, route
        assert head["x-content-type-options"] == "nosniff"
        assert head["cross-origin-resource-policy"] == "same-origin"
        if not route.startswith("/preview/"):
            assert head["cache-control"] == "no-store"
    # A preview is another site's to embed no more than the rest.
    head = _http(port, "GET", "/preview/0?size=thumb", headers=jar)[1]
    assert head["content-type"] == "image/jpeg" and head["cross-origin-resource-policy"] == "same-origin"


def test_foreign_host_and_origin_are_refused(out: Path, served: tuple[ReviewApp, int]) -> None:
    app, port = served
    inp = app.items[0].input
    token = {"X-Orthovision-Token": app.token, "Content-Type": "application/json"}
    assert _http(port, "GET", "/api/items", headers={**token, "Host": f"evil.example:{port}"})[0] == 403
    for foreign in (
        {"Origin": "http://evil.example"},
        {"Origin": f"http://127.0.0.1:{port + 1}"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        status, _, body = _http(port, "POST", "/api/decide", _decision(inp, "EV01"), {**token, **foreign})
        assert status == 403 and b"another site" in body, foreign
    assert not (out / "orthovision-decisions.csv").exists()
    same = {**token, "Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    assert _http(port, "POST", "/api/decide", _decision(inp, "EV01"), same)[0] == 200


# ------------------------------------------------------------------ hostile requests


def _raw(port: int, data: bytes, timeout: float = 10, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if not read:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return b""  # closed at once (a reset): the answer finds nobody
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_hostile_requests_are_json_errors_without_a_traceback(out: Path) -> None:
    review = Review(out, "tester")
    port, token = review.port, review.token
    head = f"Host: 127.0.0.1:{port}\r\nX-Orthovision-Token: {token}\r\nConnection: close\r\n"
    try:
        deep = b"[" * 100_000 + b"]" * 100_000
        status, hdrs, body = _http(
            port,
            "POST",
            "/api/decide",
            deep,
            {"X-Orthovision-Token": token, "Content-Type": "application/json"},
        )
        assert status == 400 and "levels deep" in json.loads(body)["error"]
        answer = _raw(port, f"POST /api/decide HTTP/1.1\r\n{head}Content-Length: abc\r\n\r\n{{}}".encode())
        assert answer.startswith(b"HTTP/1.1 400") and b"Content-Length" in answer.split(b"\r\n\r\n", 1)[1]
        # A client gone mid-body, and one gone before the answer (a tab closed mid-save).
        decision = _decision(review.get("/api/items")["items"][0]["input"], "EV01")
        for _ in range(3):
            _raw(
                port,
                f"POST /api/decide HTTP/1.1\r\n{head}Content-Length: 5000\r\n\r\n".encode() + b"{",
                read=False,
            )
            _raw(
                port,
                f"POST /api/decide HTTP/1.1\r\n{head}Content-Length: {len(decision)}\r\n\r\n".encode()
                + decision,
                read=False,
            )
        # Methods the page does not use, and the standard library's own errors: JSON.
        for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW"):
            status, hdrs, body = _http(port, method, "/api/items", headers={"X-Orthovision-Token": token})
            assert status in (405, 501) and hdrs["content-type"] == "application/json", method
            if method != "HEAD":
                assert "error" in json.loads(body)
        answer = _raw(port, b"GET / HTTP/1.1\r\nX-Long: " + b"x" * 70_000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431") and b"application/json" in answer
        assert b"<html" not in answer.lower()
        # A GET with a body: the body is never taken for a second request (smuggling).
        inner = f"GET /api/codes HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Orthovision-Token: {token}\r\n\r\n"
        answer = _raw(
            port,
            f"GET /api/items HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Orthovision-Token: {token}\r\n"
            f"Content-Length: {len(inner)}\r\n\r\n{inner}".encode(),
        )
        assert answer.count(b"HTTP/1.1 ") == 1 and answer.startswith(b"HTTP/1.1 200")
        assert len(review.get("/api/items")["items"]) == 1  # still answering
    finally:
        errors = review.stop()
    assert "Traceback" not in errors and "Error" not in errors, errors


def test_a_short_body_or_a_silent_client_times_out(
    served: tuple[ReviewApp, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from orthovision_cli.review import guard

    app, port = served
    monkeypatch.setattr(guard, "TIMEOUT", 1.0)
    monkeypatch.setattr(guard, "BODY_DEADLINE", 2.0)
    monkeypatch.setattr(guard.GuardedHandler, "timeout", 1.0)
    t0 = time.monotonic()
    answer = _raw(
        port,
        f"POST /api/decide HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Orthovision-Token: {app.token}\r\n"
        'Content-Length: 100000\r\n\r\n{"decisions":'.encode(),
    )
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 5
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # says nothing at all
        t0 = time.monotonic()
        assert s.recv(100) == b"" and time.monotonic() - t0 < 5  # closed by the server


def test_a_burst_of_connections_is_not_stalled_by_the_backlog(out: Path) -> None:
    httpd = make_server(ReviewApp(out), 0)  # listening, not yet accepting: the backlog holds them
    port = httpd.server_address[1]
    socks = []
    try:
        for _ in range(64):
            s = socket.socket()
            s.settimeout(0.5)  # a SYN dropped for a full backlog is retried only after 1 s
            s.connect(("127.0.0.1", port))
            socks.append(s)
    finally:
        for s in socks:
            s.close()
        httpd.server_close()


# ------------------------------------------------------------------ the page learns (Chromium)


@pytest.mark.slow
def test_the_page_shows_decisions_made_by_another_process(
    out: Path, served: tuple[ReviewApp, int], tmp_path: Path
) -> None:
    from conftest import require_tool
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from test_review_page import CHROME_FLAGS

    app, port = served
    inputs = _add_awaiting(out, tmp_path / "more", 2)
    app.reload()
    opts = webdriver.ChromeOptions()
    opts.binary_location = require_tool("chromium")
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
    driver = webdriver.Chrome(options=opts, service=Service(require_tool("chromedriver")))
    other = Review(out, "ben")
    try:
        # As the tool opens it: a private file that leads to the address with the token.
        from orthovision_cli.review.guard import launch_file

        launcher = launch_file(app.page_url(port))
        driver.get(launcher.as_uri())
        launcher.unlink()
        end = time.monotonic() + 30
        while driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") != "1":
            assert time.monotonic() < end, "the page did not load"
            time.sleep(0.1)
        assert driver.current_url == f"http://127.0.0.1:{port}/"  # the token out of the address bar
        assert other.decide(inputs[1], "IV07") == 200  # the file after the one shown
        row = '#list li[data-id="2"]'
        end = time.monotonic() + 15
        while "decided" not in (driver.find_element(By.CSS_SELECTOR, row).get_attribute("class") or ""):
            assert time.monotonic() < end, "the page never showed the other process's decision"
            time.sleep(0.2)
        driver.find_element(By.CSS_SELECTOR, row).click()
        picker = driver.find_element(By.ID, "pick-protocol")
        assert picker.get_attribute("value") == "IV07"
        assert "decided by ben" in driver.find_element(By.ID, "decided-note").text
    finally:
        driver.quit()
        other.stop()


def test_background_features_never_block_nor_write_through_a_link(out: Path, tmp_path: Path) -> None:
    from orthovision_cli.review.features import FEATURES_DIR, FeatureStore
    from orthovision_cli.review.items import load_items

    fifo, real = _add_awaiting(out, tmp_path / "more", 2)
    os.unlink(fifo)
    os.mkfifo(fifo)
    items = load_items(out)
    by_input = {it.input: it for it in items}
    victim = tmp_path / "victim"
    victim.mkdir()
    folder = out / FEATURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / by_input[real].sha256[:2]).symlink_to(victim, target_is_directory=True)
    store = FeatureStore(folder)
    t = threading.Thread(target=store.compute, args=(items,), daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "a FIFO among the inputs blocked the background features"
    assert store.features(by_input[real].sha256) is not None  # computed, kept in memory only
    assert store.features(items[0].sha256) is not None and store.features(by_input[fifo].sha256) is None
    assert list(victim.iterdir()) == []
    assert (folder / items[0].sha256[:2] / f"{items[0].sha256}.npy").is_file()


def test_decisions_never_locked_or_written_through_a_link(tmp_path: Path) -> None:
    from orthovision_cli.decisions import Decision, DecisionBook, clean
    from orthovision_cli.errors import OutputError

    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    victim.mkdir()
    (out / ".orthovision").symlink_to(victim, target_is_directory=True)
    with pytest.raises(OutputError, match="link out of"):
        DecisionBook(out).save([clean(Decision("/in/a.jpg", "0" * 64, "XC"))])
    assert list(victim.iterdir()) == [] and not (out / "orthovision-decisions.csv").exists()
    # The decisions file itself a link to elsewhere: replaced by the new file, target untouched.
    (out / ".orthovision").unlink()
    target = victim / "precious.csv"
    target.write_text("input,sha256\n")
    (out / "orthovision-decisions.csv").symlink_to(target)
    with pytest.raises(Exception, match="symbolic link"):
        DecisionBook(out)
    (out / "orthovision-decisions.csv").unlink()
    book = DecisionBook(out)
    (out / "orthovision-decisions.csv").symlink_to(target)  # swapped in after the start
    with pytest.raises(Exception, match="symbolic link"):
        book.save([clean(Decision("/in/a.jpg", "0" * 64, "XC"))])
    assert target.read_text() == "input,sha256\n"


def test_the_browser_is_opened_without_the_token_on_a_command_line(out: Path, tmp_path: Path) -> None:
    """A command line is visible to every user of the machine: the browser gets a private
    file that leads to the page, never the token itself."""
    seen = tmp_path / "argv.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}.tmp && mv {seen}.tmp {seen}\n')
    browser.chmod(0o755)
    env = {**os.environ, "BROWSER": f"{browser} %s", "DISPLAY": ":99"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orthovision_cli", "review", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", proc.stderr.readline())
        assert m
        port, token = int(m.group(1)), m.group(2)
        end = time.monotonic() + 30
        while not seen.exists():
            assert time.monotonic() < end, "the browser was not started"
            time.sleep(0.1)
        argv = seen.read_text()
        assert token not in argv and argv.startswith("file://")
        launcher = Path(argv.strip().removeprefix("file://"))
        assert launcher.stat().st_mode & 0o077 == 0  # this user's only
        assert f"http://127.0.0.1:{port}/?token={token}" in launcher.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert not launcher.exists()  # removed when the server stops


def test_batch_answers_from_two_processes_are_all_kept(tmp_path: Path) -> None:
    """The batch answers file (orthovision-settings.toml) has the decisions' rule: any number
    of writers, every answer kept."""
    from orthovision_cli.answers import Answer, AnswerBook, load

    out = tmp_path / "out"
    (out / ".orthovision").mkdir(parents=True)
    script = (
        "import sys; from pathlib import Path; from orthovision_cli.answers import Answer, AnswerBook\n"
        "book = AnswerBook(Path(sys.argv[1]))\n"
        "for i in range(15): book.save(Answer(f'/scans/{sys.argv[2]}/{i}', 'film', sys.argv[2], ''))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(out), who]) for who in ("anna", "ben")]
    assert [p.wait(120) for p in procs] == [0, 0]
    assert len(load(out)) == 30
    # Two books loaded before either saved (two pages open): neither erases the other.
    first, other = AnswerBook(out), AnswerBook(out)
    first.save(Answer("/scans/x", "digital", "anna", ""))
    other.save(Answer("/scans/y", "film", "ben", ""))
    got = load(out)
    assert len(got) == 32 and got["/scans/x"].answered_by == "anna"
