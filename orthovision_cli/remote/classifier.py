"""The remote classifier: one IG service, many images in flight, one clear result per image.

`RemoteClassifier` runs the IG workflow per image (discover, submit, wait, read Observations) and
is a LabelSource; `build_remote_source` builds one from the run's `RemoteSettings`. Layers below
it: `service` (workflow steps), `transport` (HTTP and retries), `bodies` (request bodies), `results`
(Observations to Labels).

Privacy: the request body is built from `sanitize.pixels_only` and the tags; no file name, path
or patient value is ever put in a request, and neither tokens nor headers are logged.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..bounded import bounded_map
from ..config import RemoteSettings
from ..errors import InputError, RemoteError, UsageError
from ..fhir.capability import Capability
from ..fhir.responses import status_reason
from ..labels.model import TAGS, Labels, Tag, normalise_tag
from ..tokens import read_token
from .bodies import submission_body
from .errors import RemoteTaskFailed, RemoteUnsupportedTag
from .results import labels_from_observations
from .sanitize import pixels_only
from .service import RemoteService
from .transport import RemoteOptions, public_url

log = logging.getLogger(__name__)


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
                f"{self.service.public} classifies none of {', '.join(self.requested)} (it offers: {offered})"
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
        with ThreadPoolExecutor(n, thread_name_prefix="remote") as pool:
            for img, fut in bounded_map(pool, self.classify, images, n):
                exc = fut.exception()
                if exc is None:
                    yield img, fut.result()
                elif isinstance(exc, InputError):
                    yield img, exc
                elif isinstance(exc, Exception):
                    yield img, RemoteError(f"{type(exc).__name__}: {exc}", path=getattr(img, "path", None))
                else:
                    raise exc


def build_remote_source(
    url: str,
    settings: RemoteSettings | None = None,
    *,
    modality: str | None = None,
    use_sse: bool = True,
    transport: httpx.BaseTransport | None = None,
) -> RemoteClassifier:
    """A RemoteClassifier for the IG service at `url` (its FHIR base), with the run's `--remote`
    options (default: `RemoteSettings()`). No network here: the service is discovered on first
    use, or call `.discover()` to fail fast.

    `settings.timeout` bounds each HTTP request; `settings.image_deadline` all the work for one
    image. Raises UsageError for bad options (URL, token, CA bundle, tags, values).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--remote needs an http(s) URL, not {public_url(url) or url!r}")
    if parts.username or parts.password:
        raise UsageError("put credentials in --token-env/--token-file, not in the URL")
    settings = (settings or RemoteSettings()).check()  # the CLI's were checked when read
    token = read_token(settings.token_env, settings.token_file)
    ctx: bool | ssl.SSLContext = settings.verify
    if settings.ca_bundle is not None:
        try:
            ctx = ssl.create_default_context(cafile=str(settings.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot use the CA bundle {settings.ca_bundle}: {exc}") from exc
    elif settings.verify:
        ctx = ssl.create_default_context()
    if token and parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        log.warning("sending a bearer token over plain http to %s", parts.hostname)
    options = RemoteOptions.for_service(url, settings, use_sse=use_sse)
    service = RemoteService(
        options, token=token, headers=dict(settings.headers), verify=ctx, transport=transport
    )
    return RemoteClassifier(service, settings.tags, modality=modality)
