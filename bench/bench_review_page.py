"""The review page with many files waiting: `orthovision review OUT` in headless Chromium.

Builds an output folder with N files awaiting review (default 500), each a distinct 24 MP
camera JPEG (bench/corpus.py's `jpeg24mp`, ~7.4 MB each; files beyond the corpus are copies
with a distinct trailer after the EOI marker, so every file has its own content hash and the
server cannot share work between them). The state rows and the review list are cloned from a
real `convert` of two sample files that went to review, so the page gets real label JSON.

Then, as a user does: `orthovision review OUT --no-browser`, the address opened in Chromium
(selenium, headless), and measured:

* start: the command started until it prints the address;
* interactive: navigation until the list is drawn and the first file's preview is shown;
* shown: navigation until every image inside the window is loaded;
* all: scrolling the list to its end until all N thumbnails are loaded;
* the same page again in the same browser (HTTP cache), and after restarting the server with
  a fresh browser profile (the server's own preview cache);
* a keyboard decision (the `a` key) until the decisions file on disk has it (median of 10);
* selecting 100 files and bulk-setting one tag until all 100 are in the decisions file;
* the server's CPU seconds and peak RSS.

Peer, in the same run: Chromium opening a plain static HTML file (same list layout) whose
`<img loading="lazy">` point at the same previews already made on disk: what the page would
cost if every preview cost nothing to serve. Ratio = review page / static page.

    python bench/bench_review_page.py [--files 500] [--corpus bench/_corpus/jpeg24mp] [--baseline REV]

`--baseline REV` also measures the review page of git revision REV (its package extracted with
`git archive`), on the same files in the same run.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orthovision_cli.review.preview import render_jpeg  # noqa: E402

CORPUS = ROOT / "bench" / "_corpus" / "jpeg24mp"
WORK = ROOT / "bench" / "_out_review_page"
SAMPLE = ROOT / "sample_data"
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

IN_WINDOW_LOADED = """
const imgs = [...document.querySelectorAll('#list img, #preview')].filter(i => {
  const r = i.getBoundingClientRect();
  return r.bottom > 0 && r.top < window.innerHeight && i.offsetParent !== null;
});
return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
"""
ALL_LOADED = "return [...document.querySelectorAll('#list img')].every(i => i.complete && i.naturalWidth > 0)"
LOADED_COUNT = (
    "return [...document.querySelectorAll('#list img')].filter(i => i.complete && i.naturalWidth > 0).length"
)


def template_output(work: Path) -> Path:
    """A real convert of two sample files that both go to review."""
    inbox = work / "template-in"
    (inbox / "photos").mkdir(parents=True)
    (inbox / "radiographs").mkdir()
    shutil.copy(SAMPLE / "photos" / "005_08.jpg", inbox / "photos")
    shutil.copy(SAMPLE / "radiographs" / "bitewing.png", inbox / "radiographs" / "film.png")
    out = work / "template-out"
    cmd = [sys.executable, "-m", "orthovision_cli", "convert", str(inbox), "-o", str(out), "-j", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if not (out / "orthovision-review.csv").exists():  # exit 5: nothing converted, both to review
        raise SystemExit(f"template convert: exit {proc.returncode}\n{proc.stderr}")
    return out


def build_output(n: int, corpus: Path, work: Path) -> Path:
    """OUT with n distinct 24 MP JPEGs awaiting review (state rows cloned from the template's
    photo row, each with its own path, size and content hash)."""
    sources = sorted(corpus.rglob("*.jpg")) + sorted(corpus.rglob("*.JPG"))
    if not sources:
        raise SystemExit(f"no JPEGs under {corpus}: run python bench/corpus.py first")
    template = template_output(work)
    inbox, out = work / "inbox", work / "out"
    inbox.mkdir()
    shutil.copytree(template / ".orthovision", out / ".orthovision")
    db = sqlite3.connect(out / ".orthovision" / "state.sqlite")
    cols = [r[1] for r in db.execute("PRAGMA table_info(inputs)")]
    row = db.execute("SELECT * FROM inputs WHERE status='review' AND rel LIKE '%005_08%'").fetchone()
    db.execute("DELETE FROM inputs")
    reasons = list(csv.DictReader((template / "orthovision-review.csv").open()))
    reason = next(r for r in reasons if r["input"].endswith("005_08.jpg"))
    rows = []
    for i in range(n):
        src = sources[i % len(sources)]
        data = src.read_bytes()
        if i >= len(sources):  # after EOI: decoders ignore it, the content hash changes
            data += f"bench copy {i}".encode()
        rel = f"day{i // 100:02d}/DSC_{i:04d}.JPG"
        dest = inbox / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        values = dict(zip(cols, row, strict=True))
        values.update(
            path=str(dest),
            rel=rel,
            size=len(data),
            mtime_ns=dest.stat().st_mtime_ns,
            content_hash=hashlib.sha256(data).hexdigest(),
        )
        db.execute(
            f"INSERT INTO inputs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
            [values[c] for c in cols],
        )
        rows.append([str(dest), reason["reason"], reason["message"]])
    db.commit()
    db.close()
    with (out / "orthovision-review.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["input", "reason", "message"])
        w.writerows(rows)
    return out


def static_peer(out: Path, work: Path) -> Path:
    """The peer: a static page of the same list, previews made beforehand on disk."""
    folder = work / "static"
    folder.mkdir()
    lis = []
    inputs = [r["input"] for r in csv.DictReader((out / "orthovision-review.csv").open())]
    for i, inp in enumerate(inputs):
        (folder / f"{i}.jpg").write_bytes(render_jpeg(Path(inp), 640))
        lis.append(
            f'<li><span class="thumb"><img loading="lazy" alt="" src="{i}.jpg"></span>'
            f'<span class="name">{Path(inp).name}</span></li>'
        )
    css = (ROOT / "orthovision_cli" / "review" / "static" / "page.css").read_text()
    (folder / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><style>{css}</style></head><body>"
        "<header><h1>static</h1></header><main><nav><ul id='list'>"
        + "".join(lis)
        + "</ul></nav><section id='detail'><div id='frame'><img id='preview' src='0.jpg'></div>"
        "</section></main></body></html>"
    )
    return folder / "index.html"


def browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.page_load_strategy = "none"  # time the page ourselves, not the load event
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver") or "chromedriver"))
    driver.set_script_timeout(120)
    return driver


def until(cond: Callable[[], Any], timeout: float = 60, poll: float = 0.01) -> float:
    """Seconds until cond() is true, polled from now."""
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"timed out: {cond}")
        time.sleep(poll)
    return time.perf_counter() - t0


def js(driver: Any, script: str) -> Any:
    try:
        return driver.execute_script(script)
    except Exception:  # the document is not there yet
        return None


def load_page(driver: Any, url: str, ready: str | None) -> dict[str, float]:
    """Navigate; seconds until `ready` (a JS condition), until the window's images are loaded,
    and until all thumbnails are loaded after scrolling the list to its end."""
    t0 = time.perf_counter()
    driver.get(url)
    res: dict[str, float] = {}
    if ready:
        until(lambda: js(driver, f"return !!({ready})"))
        res["interactive"] = time.perf_counter() - t0
    until(lambda: js(driver, IN_WINDOW_LOADED))
    res["shown"] = time.perf_counter() - t0
    res["requests_shown"] = js(driver, LOADED_COUNT) or 0
    # Scroll through the list as a person would (a window at a time), to its end.
    t1 = time.perf_counter()
    while not js(
        driver,
        "const n=document.querySelector('nav'); n.scrollTop += n.clientHeight;"
        "return n.scrollTop + n.clientHeight >= n.scrollHeight - 1",
    ):
        time.sleep(0.05)
    until(lambda: js(driver, ALL_LOADED))
    res["all_after_scroll"] = time.perf_counter() - t1
    res["requests_all"] = js(driver, LOADED_COUNT) or 0
    return res


class Server:
    """`orthovision review OUT --no-browser`, as a user runs it."""

    def __init__(self, out: Path, src: Path | None = None):
        exe = Path(sys.executable).with_name("orthovision")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "orthovision_cli"]
        env = dict(os.environ, PYTHONPATH=str(src or ROOT))
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [*cmd, "review", str(out), "--no-browser"], stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        self.start = time.perf_counter() - t0
        self.url = line.rsplit(" at ", 1)[1].strip()
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def decisions(out: Path) -> list[dict[str, str]]:
    path = out / "orthovision-decisions.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


READY = (
    "document.body && document.body.dataset.ready === '1' && "
    "document.getElementById('preview').complete && "
    "document.getElementById('preview').naturalWidth > 0"
)


def session(out: Path, profiles: Path, files: int, src: Path | None) -> dict[str, Any]:
    """Both server sessions, with the code in `src` (None: this checkout)."""
    from selenium.webdriver.common.by import By

    fig: dict[str, Any] = {}
    srv = Server(out, src)
    d = browser(profiles / "a")
    try:
        fig["start"] = srv.start
        cpu0 = srv.cpu()
        fig["cold"] = load_page(d, srv.url, READY)
        fig["cold"]["cpu"] = srv.cpu() - cpu0
        cpu0 = srv.cpu()
        fig["reload"] = load_page(d, srv.url, READY)
        fig["reload"]["cpu"] = srv.cpu() - cpu0

        # Keyboard decisions: `a` accepts the file shown and moves to the next one.
        js(d, "document.querySelector('nav').scrollTop = 0")
        body = d.find_element(By.TAG_NAME, "body")
        rtts, nexts = [], []
        for k in range(10):
            before = js(d, "return document.getElementById('rel').textContent")
            t0 = time.perf_counter()
            body.send_keys("a")
            until(lambda k=k: len(decisions(out)) >= k + 1, poll=0.002)
            rtts.append(time.perf_counter() - t0)
            # The page moves on once the server has answered, to the next file with its preview
            # shown: only then is the next key for the next file.
            until(
                lambda b=before: js(
                    d, f"return document.getElementById('rel').textContent !== {b!r} && ({READY})"
                )
            )
            nexts.append(time.perf_counter() - t0)
        fig["decide"] = {
            "median": statistics.median(rtts),
            "max": max(rtts),
            "next": statistics.median(nexts),
        }

        # Select 100 undecided files with the mouse's checkboxes, set one tag for all.
        bulk = min(100, files - 10)
        t0 = time.perf_counter()
        js(
            d,
            f"[...document.querySelectorAll('#list li input')].slice(10, {10 + bulk}).forEach(b => b.click())",
        )
        select_s = time.perf_counter() - t0
        js(
            d,
            "const t=document.getElementById('bulk-tag'); t.value='body_part';"
            "t.dispatchEvent(new Event('change'));"
            "const v=document.getElementById('bulk-value'); v.value=v.options[2].value;",
        )
        value = js(d, "return document.getElementById('bulk-value').value")
        before = sum(r["body_part"] == value for r in decisions(out))
        t0 = time.perf_counter()
        js(d, "document.getElementById('bulk-apply').click()")
        until(lambda: sum(r["body_part"] == value for r in decisions(out)) >= before + bulk, poll=0.002)
        fig["bulk"] = {"n": bulk, "select": select_s, "apply": time.perf_counter() - t0}
        fig["server"] = {"cpu": srv.cpu(), "rss": srv.peak_rss_mb()}
    finally:
        d.quit()
        srv.stop()

    # A new session: the server restarted, a browser without a cache.
    srv = Server(out, src)
    d = browser(profiles / "b")
    try:
        cpu0 = srv.cpu()
        fig["restart"] = load_page(d, srv.url, READY)
        fig["restart"]["cpu"] = srv.cpu() - cpu0
        fig["restart"]["rss"] = srv.peak_rss_mb()
    finally:
        d.quit()
        srv.stop()
    return fig


def baseline_tree(rev: str) -> Path:
    """The package as of git revision `rev`, extracted for the baseline server."""
    dest = WORK / f"baseline-{rev}"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "orthovision_cli"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--baseline", metavar="REV", help="also measure the review page of git revision REV")
    ap.add_argument("--keep", action="store_true", help="keep bench/_out_review_page")
    args = ap.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    t = time.perf_counter()
    out = build_output(args.files, args.corpus, WORK)
    print(f"built {args.files} files awaiting review in {time.perf_counter() - t:.1f} s", flush=True)
    peer_html = static_peer(out, WORK)
    profiles = Path(tempfile.mkdtemp(prefix="bench-review-"))
    figs: dict[str, dict[str, Any]] = {}
    try:
        # Peer first: its previews are on disk already (page cache warm for all).
        d = browser(profiles / "peer")
        try:
            peer = load_page(d, peer_html.as_uri(), None)
        finally:
            d.quit()
        if args.baseline:
            figs[f"at {args.baseline}"] = session(
                out, profiles / "base", args.files, baseline_tree(args.baseline)
            )
            (out / "orthovision-decisions.csv").unlink()
            shutil.rmtree(out / ".orthovision" / "previews", ignore_errors=True)
        figs["this checkout"] = session(out, profiles / "new", args.files, None)
    finally:
        shutil.rmtree(profiles, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    report(args.files, peer, figs)


def report(n: int, peer: dict[str, float], figs: dict[str, dict[str, Any]]) -> None:
    print(f"\n{n} files awaiting review (24 MP JPEGs); seconds unless noted")
    print(
        "| page | interactive | window's images loaded | thumbnails loaded then "
        "| all thumbnails after scrolling | server CPU s |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| peer: static HTML, previews on disk | - | {peer['shown']:.2f} | {peer['requests_shown']} "
        f"| {peer['all_after_scroll']:.2f} | - |"
    )
    for code, fig in figs.items():
        for key, name in (
            ("cold", "first load"),
            ("reload", "same browser again"),
            ("restart", "server restarted, new browser"),
        ):
            r = fig[key]
            print(
                f"| review ({code}), {name} | {r['interactive']:.2f} | {r['shown']:.2f} "
                f"| {r['requests_shown']} | {r['all_after_scroll']:.2f} | {r['cpu']:.1f} |"
            )
    for code, fig in figs.items():
        c, r = fig["cold"], fig["restart"]
        print(f"\n{code}: server start (command to address printed) {fig['start']:.2f} s")
        print(
            f"ratio review/peer: window's images {c['shown'] / peer['shown']:.1f}x first load, "
            f"{r['shown'] / peer['shown']:.1f}x after a restart; all thumbnails "
            f"{c['all_after_scroll'] / peer['all_after_scroll']:.1f}x first load, "
            f"{r['all_after_scroll'] / peer['all_after_scroll']:.1f}x after a restart"
        )
        print(
            f"keyboard decision to disk: median {fig['decide']['median'] * 1000:.0f} ms, "
            f"max {fig['decide']['max'] * 1000:.0f} ms (10 decisions); key until the next file "
            f"and its preview are shown: median {fig['decide']['next'] * 1000:.0f} ms"
        )
        print(
            f"select {fig['bulk']['n']} files: {fig['bulk']['select'] * 1000:.0f} ms; "
            f"bulk-set them to disk: {fig['bulk']['apply'] * 1000:.0f} ms"
        )
        print(
            f"server: {fig['server']['cpu']:.1f} CPU s over the first session, peak RSS "
            f"{fig['server']['rss']:.0f} MB; after a restart {r['cpu']:.1f} CPU s, peak RSS "
            f"{r['rss']:.0f} MB"
        )


if __name__ == "__main__":
    main()
