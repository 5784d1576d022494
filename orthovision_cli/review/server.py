"""The review page's server: the standard library's threading HTTP server on 127.0.0.1.

Nothing leaves the machine and nothing is fetched from elsewhere: the page, its script and its
style ship in `review/static/`, previews are rendered from the inputs. Against other web pages
in the same browser and other users of the machine, every request passes `guard` (Host, the
page's token on every route, Origin, timeouts, bounded bodies); what is read or deleted passes
`safefs` (inside OUT, or an input the state knows; regular files only, never blocking).
"""

from __future__ import annotations

import getpass
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..answers import AnswerBook
from ..decisions import TAUGHT_PACK, Decision, DecisionBook, clean
from ..defaults import DEFAULT_MIN_CONFIDENCE
from ..errors import OrthovisionError, UsageError
from ..inputs.source import content_hash
from ..labels.model import TAGS
from . import questions, spread, visit
from .apply import recall
from .features import FEATURES_DIR, FeatureStore
from .guard import GuardedHandler, ReviewHTTPServer, guarded, launch_file, open_browser
from .items import STATE_DB, ReviewItem, code_tables, load_items
from .preview import CACHE_DIR, SIZES, PreviewCache
from .rescore import Rescorer
from .safefs import inside, open_input

STATIC = {
    "/static/page.js": "text/javascript",
    "/static/page.css": "text/css",
    "/static/batch.js": "text/javascript",  # the batch questions' panel (questions.py)
    "/static/batch.css": "text/css",
    "/static/visit.js": "text/javascript",  # one patient for a whole visit (visit.py)
}
MAX_BODY = 4 << 20  # 500 decisions in one bulk POST are ~100 kB


class ReviewApp:
    """The state behind the page: the review list, the decisions, previews."""

    def __init__(self, output: Path, who: str | None = None):
        self.output = output
        self.who = who or _user()
        self.token = secrets.token_urlsafe(24)
        self.book = DecisionBook(output)
        self.answers = AnswerBook(output)  # batch facts, asked once per source folder
        self.threshold = questions.min_confidence(output)
        # The cache lives in the state folder convert made; none there, or one that leads out
        # of OUT through a link: memory only.
        cache = output / CACHE_DIR
        usable = (output / STATE_DB).parent.is_dir() and inside(output, cache)
        self.previews = PreviewCache(cache if usable else None)
        self.codes = code_tables()
        self._lock = threading.Lock()
        self._hashes: dict[tuple[str, int, int], str] = {}
        self.items: list[ReviewItem] = load_items(output)
        self.previews.prune({it.sha256 for it in self.items if it.sha256})
        state_dir = (output / STATE_DB).parent
        usable = state_dir.is_dir() and inside(output, output / FEATURES_DIR)
        models, min_confidence = _last_run(output)
        self.features = FeatureStore(output / FEATURES_DIR if usable else None, models)
        self.rescorer = Rescorer(output, self.book, self._snapshot, models, min_confidence)
        # The taught pack is written in the state folder: not where a link would lead out of OUT.
        self.can_teach = state_dir.is_dir() and inside(output, output / TAUGHT_PACK)
        self.teaching = False

    def _snapshot(self) -> list[ReviewItem]:
        with self._lock:
            return list(self.items)

    def start_background(self) -> None:
        """Features of the listed files for look-alikes, and teaching after every few decisions
        (`serve` starts both; tests may not)."""
        self.features.start(list(self.items))
        self.teaching = self.can_teach

    def settled(self, it: ReviewItem) -> bool:
        """The taught pack is sure of this undecided file now: it no longer needs a person."""
        return self.rescorer.settled.get(it.input) == it.sha256 and self.book.get(it.input) is None

    def teach_status(self) -> dict[str, Any]:
        status = self.rescorer.status()
        items = self._snapshot()
        status["settled"] = [it.id for it in items if self.settled(it)]
        status["enabled"] = self.teaching
        return status

    def similar(self, item_id: int, tags: list[str]) -> dict[str, Any]:
        items = [it for it in self._snapshot() if not self.settled(it)]
        return spread.similar(items, self.book, self.features, item_id, tags)

    def next_up(self) -> dict[str, Any]:
        items = [it for it in self._snapshot() if not self.settled(it)]
        return spread.next_up(items, self.book, self.features)

    def batch_json(self) -> dict[str, Any]:
        """The batch questions: open ones, answers given, the files they settle (by id)."""
        items = self.reload()
        got = questions.summary(items, self.answers, self.threshold)
        ids = {it.input: it.id for it in items}
        got["settled"] = sorted(ids[i] for i in got["settled"] if i in ids)
        return got

    def name_visit(self, payload: Any) -> dict[str, Any]:
        with self._lock:
            items = list(self.items)
        saved = visit.name_visit(payload, items, self.book, self.who)
        return {"saved": [_decision_json(d) for d in saved]}

    def answer(self, payload: Any) -> dict[str, Any]:
        with self._lock:
            items = list(self.items)
        saved = questions.answer(payload, items, self.answers, self.who)
        return {"answer": asdict(saved), **self.batch_json()}

    def page_url(self, port: int) -> str:
        """The address that opens the page: it carries the token once (then a cookie)."""
        return f"http://127.0.0.1:{port}/?token={self.token}"

    def content_key(
        self, item: ReviewItem, opened: Path | None = None, st: os.stat_result | None = None
    ) -> str:
        """The file's content hash now: the state's while its size and mtime hold (no read),
        else hashed once per change; raises InputError (unreadable). `opened`, `st`: the file
        as `safefs.open_input` opened it (else it is opened here)."""
        if opened is None or st is None:
            with open_input(Path(item.input), item.size, item.mtime_ns) as (path, stat_now):
                return self.content_key(item, path, stat_now)
        if item.sha256 and (st.st_size, st.st_mtime_ns) == (item.size, item.mtime_ns):
            return item.sha256
        key = (item.input, st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._hashes.get(key)
        if known is None:
            known = content_hash(opened)
            with self._lock:
                self._hashes[key] = known
        return known

    def reload(self) -> list[ReviewItem]:
        with self._lock:
            self.items = load_items(self.output)
            return self.items

    def item(self, item_id: int) -> ReviewItem | None:
        with self._lock:
            return self.items[item_id] if 0 <= item_id < len(self.items) else None

    def _decision(self, it: ReviewItem) -> tuple[dict[str, Any] | None, bool]:
        """The item's decision as the page shows it, and whether an old one is stale."""
        dec = self.book.get(it.input)
        if dec is None:
            return None, False
        if dec.sha256 != it.sha256:
            return None, True
        return _decision_json(dec), False

    def items_json(self) -> dict[str, Any]:
        self.book.refresh()  # decisions saved by another page or process since
        out = []
        for it in self.reload():
            d = it.as_dict()
            d["decision"], d["stale"] = self._decision(it)
            d["settled"] = self.settled(it)
            out.append(d)
        return {"output": str(self.output), "who": self.who, "items": out}

    def decisions_json(self) -> dict[str, Any]:
        """The decisions of the listed files now (the page polls it: other pages, processes)."""
        self.book.refresh()
        with self._lock:
            items = list(self.items)
        out = {}
        for it in items:
            dec, stale = self._decision(it)
            out[it.input] = {"decision": dec, "stale": stale}
        return {"decisions": out}

    def decide(self, payload: Any) -> list[dict[str, str]]:
        """Save decisions `{"decisions": [{"input": ..., "modality": ..., ...}, ...]}`."""
        if not isinstance(payload, dict) or not isinstance(payload.get("decisions"), list):
            raise UsageError('expected {"decisions": [...]}')
        with self._lock:
            by_input = {it.input: it for it in self.items}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        cleaned = []
        for raw in payload["decisions"]:
            if not isinstance(raw, dict) or not isinstance(raw.get("input"), str):
                raise UsageError("each decision needs an input")
            it = by_input.get(raw["input"])
            if it is None:
                raise UsageError(f"{raw['input']} is not awaiting review")
            if not it.sha256:
                raise UsageError(f"{it.rel}: the state has no content hash; run convert again")
            # Exactly the tags named are the person's: a bulk "Set" names one (issue 21).
            tags = [t for t in TAGS if t in raw]
            if not tags:
                raise UsageError(f"{it.rel}: a decision names at least one tag")
            values = {t: str(raw.get(t) or "") for t in tags}
            try:
                cleaned.append(
                    clean(
                        Decision(
                            it.input,
                            it.sha256,
                            **values,
                            decided_by=self.who,
                            decided_at=now,
                            decided_tags=" ".join(tags),
                        )
                    )
                )
            except UsageError as exc:
                raise UsageError(f"{it.rel}: {exc.message}") from exc
        saved = [_decision_json(d) for d in self.book.save(cleaned)]
        if self.teaching:
            self.rescorer.note()  # every few decisions: learn, label the rest again
        return saved


def _decision_json(d: Decision) -> dict[str, Any]:
    return {
        "input": d.input,
        **{t: d.value(t) for t in TAGS},
        "decided_tags": list(d.tags),
        "decided_by": d.decided_by,
        "decided_at": d.decided_at,
        "patient_id": d.patient_id,
    }


def _last_run(output: Path) -> tuple[Path | None, float]:
    """The pack the last convert into `output` used (None: the embedded one) and its
    --min-confidence."""
    try:
        settings = recall(output)
    except OrthovisionError:
        return None, DEFAULT_MIN_CONFIDENCE
    return settings.models, settings.min_confidence


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def make_handler(app: ReviewApp) -> type[GuardedHandler]:
    class Handler(GuardedHandler):
        token = app.token

        @guarded
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/":
                page = _static("page.html").decode().replace("__TOKEN__", app.token)
                self.send_body(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            elif url.path in STATIC:
                self.send_body(HTTPStatus.OK, _static(url.path.rsplit("/", 1)[1]), STATIC[url.path])
            elif url.path == "/api/items":
                self.send_json(HTTPStatus.OK, app.items_json())
            elif url.path == "/api/decisions":
                self.send_json(HTTPStatus.OK, app.decisions_json())
            elif url.path == "/api/batch":
                self.send_json(HTTPStatus.OK, app.batch_json())
            elif url.path == "/api/codes":
                self.send_json(HTTPStatus.OK, app.codes)
            elif url.path == "/api/similar":
                q = parse_qs(url.query)
                try:
                    of = int((q.get("id") or ["-1"])[0])
                except ValueError:
                    of = -1
                tags = ",".join(q.get("tags") or []).split(",")
                self.send_json(HTTPStatus.OK, app.similar(of, tags))
            elif url.path == "/api/next":
                self.send_json(HTTPStatus.OK, app.next_up())
            elif url.path == "/api/teach":
                self.send_json(HTTPStatus.OK, app.teach_status())
            elif url.path.startswith("/preview/"):
                self._preview(url.path, parse_qs(url.query))
            else:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def _preview(self, path: str, query: dict[str, list[str]]) -> None:
            try:
                item = app.item(int(path.rsplit("/", 1)[1]))
            except ValueError:
                item = None
            size = (query.get("size") or ["full"])[0]
            if item is None or size not in SIZES:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": "no such item"})
                return
            try:
                # Opened once, non-blocking, a regular file: what is hashed and decoded is
                # the file checked (safefs).
                with open_input(Path(item.input), item.size, item.mtime_ns) as (opened, st):
                    sha = app.content_key(item, opened, st)
                    etag = f'"{sha}-{size}"'
                    # The URL names the content hash: while it is the file's, the answer never
                    # changes (the browser need not even ask again); else the browser revalidates.
                    cache = (
                        "private, max-age=31536000, immutable"
                        if query.get("sha") == [sha]
                        else "private, no-cache"
                    )
                    if etag in (self.headers.get("If-None-Match") or ""):
                        self.send_body(HTTPStatus.NOT_MODIFIED, b"", "image/jpeg", cache, etag)
                        return
                    data = app.previews.jpeg(opened, sha, size)
            except OrthovisionError as exc:
                self.send_json(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": exc.one_line()})
                return
            self.send_body(HTTPStatus.OK, data, "image/jpeg", cache, etag)

        @guarded
        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            # Film or digital for a folder (questions.py); a patient for a whole visit (visit.py).
            posts = {"/api/batch-answer": app.answer, "/api/visit": app.name_visit}
            if path in posts:
                try:
                    self.send_json(HTTPStatus.OK, posts[path](self.payload(MAX_BODY)))
                except UsageError as exc:
                    self.send_json(HTTPStatus.BAD_REQUEST, {"error": exc.message})
                except OrthovisionError as exc:  # the settings file cannot be written
                    self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": exc.one_line()})
                return
            if path != "/api/decide":
                self.close_connection = True
                self.send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
                return
            try:
                saved = app.decide(self.payload(MAX_BODY))
            except UsageError as exc:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": exc.message})
                return
            except OrthovisionError as exc:  # the decisions file cannot be written
                self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": exc.one_line()})
                return
            self.send_json(HTTPStatus.OK, {"saved": saved})

    return Handler


def make_server(app: ReviewApp, port: int = 0) -> ReviewHTTPServer:
    """Bound to 127.0.0.1 only; port 0 takes a free one."""
    try:
        server = ReviewHTTPServer(("127.0.0.1", port), make_handler(app))
    except OSError as exc:
        raise UsageError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from exc
    return server


def serve(
    output: Path,
    port: int = 0,
    browser: bool = True,
    who: str | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve the review page until interrupted (Ctrl-C)."""
    app = ReviewApp(output, who)
    server = make_server(app, port)
    app.start_background()
    url = app.page_url(server.server_address[1])
    if ready is not None:
        ready(url, len(app.items))
    launcher = None
    if browser:
        launcher = launch_file(url)
        if not open_browser(launcher.as_uri()):
            launcher.unlink(missing_ok=True)
            launcher = None
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if launcher is not None:
            launcher.unlink(missing_ok=True)
