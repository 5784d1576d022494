"""The remote classifier: one IG service, many images in flight, one clear result per image.

Layers, bottom up: `RemoteService` sends requests (explicit timeouts and connection limits,
retries of 429/502/503/504 with backoff and Retry-After, errors mapped onto `remote.errors`);
`RemoteClassifier` runs the IG workflow per image (discover, submit, wait, read Observations)
and is a LabelSource; `build_remote_source` builds one from CLI options.

Privacy: the request body is built from `sanitize.pixels_only` and the tags; no file name, path
or patient value is ever put in a request, and neither tokens nor headers are logged.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..errors import InputError, RemoteError, UsageError
from ..fhir import ig
from ..fhir.capability import Capability, parse_capability
from ..fhir.responses import inlined, status_reason, task_id_from
from ..fhir.validate import fhir_parse
from ..labels.model import TAGS, Labels, Tag, normalise_tag
from .errors import (
    RemoteBadResponse,
    RemoteConnectError,
    RemoteDeadline,
    RemoteDropped,
    RemoteHTTPError,
    RemoteTaskFailed,
    RemoteTimeout,
    RemoteTLSError,
    RemoteUnsupportedTag,
    outcome_line,
)
from .poll import RETRY_BACKOFF, Backoff, retry_after, sse_data
from .results import labels_from_observations
from .sanitize import pixels_only

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 502, 503, 504})
B64_CHUNK = 3 * 64 * 1024  # raw bytes per streamed base64 piece (a multiple of 3)
_SENTINEL = "T1ZDTElTRU5USU5FTA=="  # valid base64, spliced out for the streamed image


@dataclass(frozen=True)
class RemoteOptions:
    """How to talk to the service. `timeout` bounds each HTTP request; `deadline` bounds all the
    work for one image (submission, retries, waiting, results)."""

    base_url: str
    timeout: float = 30.0
    deadline: float = 300.0
    concurrency: int = 4
    post_to_base: bool = False
    max_attempts: int = 6
    use_sse: bool = True
    poll: Backoff = field(default_factory=Backoff)
    retry: Backoff = RETRY_BACKOFF


class _Bearer(httpx.Auth):
    """Adds the bearer token; its repr never shows it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "<bearer token>"


def public_url(url: str) -> str:
    """The URL without user info, query or fragment: safe for reports and provenance."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


Body = Callable[[], Iterable[bytes]]


@dataclass
class Request:
    """One request body prepared once and replayable (for retries)."""

    length: int
    parts: Body


def submission_body(
    image: bytes, content_type: str, tags: Sequence[str], modality: str | None = None
) -> Request:
    """The OrthovisionAIBundle as a replayable byte stream: the JSON is checked with
    fhir.resources around a placeholder, and the image's base64 is streamed in pieces so a large
    scan is never held as base64 text and JSON at once."""
    bundle = ig.submission_bundle(b"", content_type, tags, modality=modality)
    binary = bundle["entry"][0]["resource"]
    binary["data"] = _SENTINEL
    fhir_parse(bundle)
    text = json.dumps(bundle, separators=(",", ":"))
    head, sep, tail = text.partition(f'"{_SENTINEL}"')
    if not sep or _SENTINEL in tail:
        binary["data"] = base64.b64encode(image).decode("ascii")
        whole = json.dumps(bundle).encode()
        return Request(len(whole), lambda: (whole,))
    prefix, suffix = (head + '"').encode(), ('"' + tail).encode()
    b64_len = 4 * ((len(image) + 2) // 3)

    def parts() -> Iterator[bytes]:
        yield prefix
        view = memoryview(image)
        for start in range(0, len(image), B64_CHUNK):
            yield base64.b64encode(view[start : start + B64_CHUNK])
        yield suffix

    return Request(len(prefix) + b64_len + len(suffix), parts)


class RemoteService:
    """HTTP to one Orthovision AI IG service."""

    def __init__(
        self,
        options: RemoteOptions,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.options = options
        self.base = options.base_url.rstrip("/")
        self.public = public_url(self.base)
        pool = max(4, 2 * options.concurrency + 2)  # SSE holds one connection per image
        self.client = httpx.Client(
            timeout=httpx.Timeout(options.timeout, connect=min(options.timeout, 10.0)),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            headers={"Accept": ig.FHIR_JSON, **dict(headers or {})},
            auth=_Bearer(token) if token else None,
            verify=verify,
            transport=transport,
            follow_redirects=False,  # a redirect could carry the token elsewhere
        )
        self._lock = threading.Lock()
        self._capability: Capability | None = None
        self._devices: dict[str, dict[str, Any] | None] = {}

    def close(self) -> None:
        self.client.close()

    def url(self, ref: str) -> str:
        if ref.startswith(("http://", "https://")):
            if not ref.startswith(self.base + "/"):
                raise RemoteBadResponse(f"reference outside the service: {public_url(ref)}")
            return ref
        return f"{self.base}/{ref.lstrip('/')}"

    # -- one request, with retries
    def request(
        self,
        method: str,
        ref: str,
        *,
        deadline: float,
        body: Request | None = None,
        accept: str | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        url = self.url(ref)
        path = urlsplit(url).path
        delays = self.options.retry.delays()
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteDeadline(f"per-image deadline reached before {method} {path}")
            headers = {}
            if body is not None:
                headers = {"Content-Type": ig.FHIR_JSON, "Content-Length": str(body.length)}
            if accept:
                headers["Accept"] = accept
            wait_for: float | None = None
            try:
                resp = self.client.request(
                    method,
                    url,
                    content=body.parts() if body is not None else None,
                    headers=headers,
                    timeout=httpx.Timeout(min(self.options.timeout, remaining)),
                )
            except httpx.TimeoutException as exc:
                limit = min(self.options.timeout, remaining)
                err: RemoteError = RemoteTimeout(f"{method} {path}: no answer within {limit:.1f} s")
                retry = idempotent or isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            except httpx.ConnectError as exc:
                if _is_tls(exc):
                    raise RemoteTLSError(f"TLS failure with {self.public}: {exc}") from exc
                err = RemoteConnectError(f"cannot connect to {self.public}: {exc}")
                retry = True  # nothing was sent
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                err = RemoteDropped(
                    f"{method} {path}: connection dropped ({exc or type(exc).__name__})"
                )
                retry = idempotent
            except httpx.HTTPError as exc:
                raise RemoteConnectError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            else:
                log.debug("%s %s -> %s", method, path, resp.status_code)
                if resp.status_code < 300:
                    return resp
                err = self._status_error(method, path, resp)
                retry = resp.status_code in RETRY_STATUS
                wait_for = retry_after(resp.headers.get("retry-after"))
                resp.close()
            pause = wait_for if wait_for is not None else next(delays)
            if (
                not retry
                or attempt >= self.options.max_attempts
                or (time.monotonic() + pause >= deadline)
            ):
                if attempt > 1:
                    err.message += f" (after {attempt} attempts)"
                raise err
            time.sleep(pause)

    def _status_error(self, method: str, path: str, resp: httpx.Response) -> RemoteError:
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError, httpx.ResponseNotRead):
            body = None
        text, ig_code, issue_code = outcome_line(body)
        where = f"HTTP {resp.status_code} on {method} {path}"
        msg = f"{where}: {text}" if text else f"{where}: {resp.reason_phrase}"
        outcome = body if text else None
        if issue_code == "not-supported" and "tag" in text.lower():
            return RemoteUnsupportedTag(msg, outcome=outcome, status_code=resp.status_code)
        return RemoteHTTPError(
            msg, error_code=ig_code, outcome=outcome, status_code=resp.status_code
        )

    def json(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RemoteBadResponse(f"{what}: the answer is not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise RemoteBadResponse(f"{what}: the answer is not a FHIR resource")
        return data

    # -- the IG workflow
    def capability(self, deadline: float | None = None) -> Capability:
        with self._lock:
            if self._capability is not None:
                return self._capability
        end = deadline or time.monotonic() + self.options.deadline
        data = self.json(self.request("GET", "metadata", deadline=end), "GET /metadata")
        try:
            cap = parse_capability(data)
        except ValueError as exc:
            raise RemoteBadResponse(f"GET /metadata: {exc}") from exc
        with self._lock:
            self._capability = cap
        return cap

    def submit(self, body: Request, deadline: float) -> tuple[str, dict[str, Any] | None, Any]:
        path = "" if self.options.post_to_base else "Bundle"
        resp = self.request("POST", path, body=body, deadline=deadline, idempotent=False)
        if resp.status_code == 202 and not resp.content:
            loc = resp.headers.get("content-location") or resp.headers.get("location") or ""
            data: Any = {"entry": [{"response": {"location": loc}}]}
        else:
            data = self.json(resp, "POST Bundle")
        tid, task = task_id_from(data)
        if tid is None:
            raise RemoteBadResponse("POST Bundle: no Task id in the transaction response")
        return tid, task, data

    def wait(self, tid: str, task: dict[str, Any] | None, deadline: float) -> dict[str, Any]:
        """The Task once final: by SSE where the service offers it, else by polling."""
        if task is not None and task.get("status") in ig.FINAL_STATES:
            return task
        cap = self._capability
        if self.options.use_sse and cap is not None and cap.sse:
            final = self._wait_sse(tid, deadline)
            if final is not None:
                return final
        delays = self.options.poll.delays()
        while True:
            pause = next(delays)
            if time.monotonic() + pause > deadline:
                status = task.get("status") if task else "unknown"
                raise RemoteDeadline(
                    f"Task {tid} still {status} after {self.options.deadline:.0f} s", task_id=tid
                )
            time.sleep(pause)
            resp = self.request("GET", f"Task/{tid}", deadline=deadline)
            data = self.json(resp, f"GET Task/{tid}")
            _, found = task_id_from(data)
            if found is None:
                raise RemoteBadResponse(f"GET Task/{tid}: the answer is not a Task", task_id=tid)
            task = found
            if task.get("status") in ig.FINAL_STATES:
                return task
            hint = retry_after(resp.headers.get("retry-after"))
            if hint is not None:
                time.sleep(min(hint, max(0.0, deadline - time.monotonic())))

    def _wait_sse(self, tid: str, deadline: float) -> dict[str, Any] | None:
        """Follow the Task's event stream; None (fall back to polling) on any trouble."""
        url = self.url(f"Task/{tid}")
        try:
            with self.client.stream(
                "GET",
                url,
                headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(
                    self.options.timeout, read=max(0.1, deadline - time.monotonic())
                ),
            ) as resp:
                if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith(
                    "text/event-stream"
                ):
                    return None
                for data in sse_data(resp.iter_lines()):
                    _, task = task_id_from(data)
                    if task is not None and task.get("status") in ig.FINAL_STATES:
                        return task
                    if time.monotonic() > deadline:
                        return None
        except httpx.HTTPError as exc:
            log.debug("Task %s: event stream ended (%s); polling", tid, type(exc).__name__)
        return None

    def observations(
        self, task: dict[str, Any], extra: Iterable[Any], deadline: float
    ) -> list[dict[str, Any]]:
        tid = str(task.get("id"))
        known: dict[str, dict[str, Any]] = {}
        for source in (task, *extra):
            for obs in inlined(source, "Observation"):
                if obs.get("id"):
                    known[str(obs["id"])] = obs
        found: list[dict[str, Any]] = []
        for out in task.get("output") or []:
            ref = str(((out or {}).get("valueReference") or {}).get("reference") or "")
            oid = ref.rstrip("/").split("/")[-1].lstrip("#")
            if oid in known:
                found.append(known[oid])
            elif ref.startswith("#") or not ref:
                raise RemoteBadResponse(
                    f"Task {tid}: output {ref!r} cannot be resolved", task_id=tid
                )
            else:
                resp = self.request("GET", ref, deadline=deadline)
                obs = self.json(resp, f"GET {ref}")
                if obs.get("resourceType") != "Observation":
                    raise RemoteBadResponse(f"{ref} is not an Observation", task_id=tid)
                found.append(obs)
        if not found and known:
            found = list(known.values())
        return found

    def device(self, task: dict[str, Any], deadline: float) -> dict[str, Any] | None:
        """The performer-device Device (the model), cached; None when not given or unreadable."""
        ref = next(
            (
                str((e.get("valueReference") or {}).get("reference") or "")
                for e in task.get("extension") or []
                if isinstance(e, dict) and e.get("url") == ig.EXT_PERFORMER_DEVICE
            ),
            "",
        ) or str((task.get("owner") or {}).get("reference") or "")
        if ref.split("/")[-2:-1] != ["Device"]:
            return None
        with self._lock:
            if ref in self._devices:
                return self._devices[ref]
        try:
            dev: dict[str, Any] | None = self.json(
                self.request("GET", ref, deadline=deadline), f"GET {ref}"
            )
        except RemoteError:
            dev = None
        model = None
        if dev is not None:
            names = [n.get("value") for n in dev.get("name") or [] if isinstance(n, dict)]
            versions = [v.get("value") for v in dev.get("version") or [] if isinstance(v, dict)]
            model = {
                "reference": ref,
                "manufacturer": dev.get("manufacturer"),
                "name": dev.get("displayName") or (names[0] if names else None),
                "model_number": dev.get("modelNumber"),
                "version": versions[0] if versions else None,
            }
            model = {k: v for k, v in model.items() if v}
        with self._lock:
            self._devices[ref] = model
        return model


class RemoteClassifier:
    """A LabelSource backed by an Orthovision AI IG service.

    Thread-safe: the batch runner may call `classify` from many workers; `classify_many` runs
    its own bounded pool. Each call raises a `RemoteError` subclass for that image only.
    """

    name = "remote"

    def __init__(
        self,
        service: RemoteService,
        tags: Sequence[str] = (),
        *,
        modality: str | None = None,
    ) -> None:
        self.service = service
        wanted = [(t, normalise_tag(t)) for t in tags] if tags else [(t, t) for t in TAGS]
        bad = [t for t, n in wanted if n is None]
        if bad:
            raise UsageError(f"unknown tag(s) for --remote: {', '.join(bad)}")
        self.requested: list[Tag] = list(dict.fromkeys(n for _, n in wanted if n is not None))
        self.modality = modality
        self._unsupported: list[Tag] | None = None

    @property
    def base_url(self) -> str:
        return self.service.public

    def close(self) -> None:
        self.service.close()

    def __enter__(self) -> RemoteClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def discover(self) -> Capability:
        """Read the CapabilityStatement (once) and note the tags the service cannot classify."""
        cap = self.service.capability()
        if self._unsupported is None:
            self._unsupported = [t for t in self.requested if cap.spelling(t) is None]
            if self._unsupported:
                log.warning(
                    "%s cannot classify: %s (it offers: %s)",
                    self.service.public,
                    ", ".join(self._unsupported),
                    ", ".join(s.raw for s in cap.tags) or "nothing",
                )
        return cap

    @property
    def unsupported_tags(self) -> list[Tag]:
        """Requested tags the service does not offer (after `discover`)."""
        if self._unsupported is None:
            self.discover()
        return list(self._unsupported or [])

    def classify(self, image: Any, *, modality: str | None = None) -> Labels:
        path = getattr(image, "path", None)
        try:
            return self._classify(image, modality or self.modality)
        except RemoteError as exc:
            if exc.path is None and path is not None:
                exc.path = Path(path)
            raise

    def _classify(self, image: Any, modality: str | None) -> Labels:
        deadline = time.monotonic() + self.service.options.deadline
        cap = self.discover()
        asked = [(t, s) for t in self.requested if (s := cap.spelling(t)) is not None]
        if not asked:
            offered = ", ".join(s.raw for s in cap.tags) or "nothing"
            raise RemoteUnsupportedTag(
                f"{self.service.public} classifies none of {', '.join(self.requested)} "
                f"(it offers: {offered})"
            )
        pixels, ctype = pixels_only(image)
        body = submission_body(pixels, ctype, [s for _, s in asked], modality)
        del pixels
        tid, task, response = self.service.submit(body, deadline)
        try:
            final = self.service.wait(tid, task, deadline)
            status = final.get("status")
            if status != "completed":
                why = status_reason(final) or (final.get("businessStatus") or {}).get("text") or ""
                reason = "remote-task-cancelled" if status == "cancelled" else None
                raise RemoteTaskFailed(
                    f"Task {tid} {status}" + (f": {why}" if why else ""),
                    task_id=tid,
                    reason=reason,
                )
            observations = self.service.observations(final, [response], deadline)
            if len(observations) != len(asked):
                log.warning(
                    "Task %s: %d outputs for %d tags (task-input-output-match)",
                    tid,
                    len(observations),
                    len(asked),
                )
            provenance: dict[str, Any] = {"service": self.service.public, "task": tid}
            model = self.service.device(final, deadline)
            if model:
                provenance["model"] = model
            return labels_from_observations(observations, source=self.name, provenance=provenance)
        except RemoteError as exc:
            exc.task_id = exc.task_id or tid
            raise

    def classify_many(
        self, images: Iterable[Any], concurrency: int | None = None
    ) -> Iterator[tuple[Any, Labels | InputError]]:
        """Classify many images with up to `concurrency` in flight; yields (image, Labels or the
        InputError of that image: a RemoteError, or e.g. UnsupportedFormat when the file cannot be
        read) as each finishes. Images are read lazily, so memory stays
        bounded by the number in flight."""
        n = max(1, concurrency or self.service.options.concurrency)
        it = iter(images)
        with ThreadPoolExecutor(n, thread_name_prefix="remote") as pool:
            pending: dict[Future[Labels], Any] = {}
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < n:
                    try:
                        img = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[pool.submit(self.classify, img)] = img
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    img = pending.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        yield img, fut.result()
                    elif isinstance(exc, InputError):
                        yield img, exc
                    elif isinstance(exc, Exception):
                        err = RemoteError(
                            f"{type(exc).__name__}: {exc}", path=getattr(img, "path", None)
                        )
                        yield img, err
                    else:
                        raise exc


def _read_token(token_env: str | None, token_file: Path | None) -> str | None:
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read the token file: {exc.strerror or exc}") from exc
        if not token:
            raise UsageError("the token file is empty")
        return token
    if token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise UsageError(f"the environment variable {token_env} holding the token is not set")
        return token
    return None


def build_remote_source(
    url: str,
    *,
    token_env: str | None = None,
    token_file: Path | None = None,
    headers: dict[str, str] | None = None,
    ca_bundle: Path | None = None,
    verify: bool = True,
    timeout: float = 30.0,
    concurrency: int = 4,
    post_to_base: bool = False,
    tags: Sequence[str] = (),
    deadline: float | None = None,
    modality: str | None = None,
    use_sse: bool = True,
    transport: httpx.BaseTransport | None = None,
) -> RemoteClassifier:
    """A RemoteClassifier for the IG service at `url` (its FHIR base). No network here: the
    service is discovered on first use, or call `.discover()` to fail fast.

    `timeout` bounds each HTTP request; `deadline` (default max(120, 4 x timeout)) bounds all the
    work for one image. Raises UsageError for bad options (URL, token, CA bundle, tags).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--remote needs an http(s) URL, not {public_url(url) or url!r}")
    if parts.username or parts.password:
        raise UsageError("put credentials in --token-env/--token-file, not in the URL")
    if timeout <= 0 or concurrency < 1:
        raise UsageError("--timeout must be > 0 and --concurrency >= 1")
    token = _read_token(token_env, token_file)
    ctx: bool | ssl.SSLContext = verify
    if ca_bundle is not None:
        try:
            ctx = ssl.create_default_context(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot use the CA bundle {ca_bundle}: {exc}") from exc
    elif verify:
        ctx = ssl.create_default_context()
    if token and parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        log.warning("sending a bearer token over plain http to %s", parts.hostname)
    options = RemoteOptions(
        base_url=url,
        timeout=timeout,
        deadline=deadline if deadline is not None else max(120.0, 4 * timeout),
        concurrency=concurrency,
        post_to_base=post_to_base,
        use_sse=use_sse,
    )
    service = RemoteService(options, token=token, headers=headers, verify=ctx, transport=transport)
    return RemoteClassifier(service, tags, modality=modality)
