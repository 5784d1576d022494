"""Several Orthovision IG services at once: `--remote URL` given more than once, or per tag as
`--remote protocol,body_part=URL`.

Every service is asked in parallel for the tags it is given (all tags by default). Per tag the
most confident answer wins and keeps its service as its source (`remote:host:port`); the other
answers are listed as alternatives. When two services give different values and both are at
least as confident as the review threshold, nobody can say which is right: the label's
confidence becomes 0 and its source names both, so the file goes to review (or its tag is left
unknown with `--on-uncertain convert`). A service that fails for an image (down, timeout, error)
is noted in the labels' detail and the others decide; only when every service fails does the
image fail, with the first service's reason.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from ..config import RemoteSettings
from ..errors import InputError, UsageError
from ..labels.model import TAGS, Labels, normalise_tag

log = logging.getLogger(__name__)
_PER_TAG = re.compile(r"([A-Za-z_,\-() ]+)=((?:https?)://.+)")


def parse_remote(value: str) -> tuple[str, list[str]]:
    """`URL` or `tag[,tag]=URL` -> (URL, tags); raises UsageError for an unknown tag."""
    m = _PER_TAG.fullmatch(value.strip())
    if not m:
        return value.strip(), []
    tags = [t.strip() for t in m.group(1).split(",") if t.strip()]
    bad = [t for t in tags if normalise_tag(t) is None]
    if bad:
        raise UsageError(f"--remote {value!r}: unknown tag(s) {', '.join(bad)}")
    return m.group(2), tags


def remotes(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class MultiRemoteSource:
    """A LabelSource over several remote classifiers, fused per tag."""

    name = "remote"

    def __init__(self, sources: list[Any], min_confidence: float):
        self.sources = sources
        self.min_confidence = min_confidence
        self._pool = ThreadPoolExecutor(max(2, 4 * len(sources)), thread_name_prefix="services")

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        for s in self.sources:
            s.close()

    def classify(self, image: Any) -> Labels:
        futures = [(s, self._pool.submit(s.classify, image)) for s in self.sources]
        answers: list[tuple[str, Labels]] = []
        failures: list[tuple[str, InputError]] = []
        for src, fut in futures:
            exc = fut.exception()
            if exc is None:
                answers.append((src.name, fut.result()))
            elif isinstance(exc, InputError):
                failures.append((src.name, exc))
                log.warning("%s: %s", src.name, exc.one_line())
            else:
                raise exc
        if not answers:
            raise failures[0][1]
        down = [{"service": name, "error": exc.one_line()} for name, exc in failures]
        return fuse_services([labels for _, labels in answers], self.min_confidence, down)


def fuse_services(answers: list[Labels], min_confidence: float, down: list[dict[str, str]]) -> Labels:
    out = Labels()
    for tag in TAGS:
        known = [lab for labels in answers if (lab := labels.get(tag)) is not None and lab.known]
        if not known:
            unknown = [lab for labels in answers if (lab := labels.get(tag)) is not None]
            if unknown:
                out = out.with_label(unknown[0])
            continue
        known.sort(key=lambda lab: lab.confidence, reverse=True)
        winner = known[0]
        others = [
            {"value": lab.value, "confidence": round(lab.confidence, 4), "source": lab.source}
            for lab in known[1:]
        ]
        detail: dict[str, Any] = dict(winner.detail)
        if others:
            detail["alternatives"] = others
        if down:
            detail["services_down"] = down
        rivals = [lab for lab in known[1:] if lab.value != winner.value and lab.confidence >= min_confidence]
        if rivals and winner.confidence >= min_confidence:
            detail["disagreement"] = [
                {"value": lab.value, "confidence": round(lab.confidence, 4), "source": lab.source}
                for lab in (winner, *rivals)
            ]
            winner = replace(
                winner,
                confidence=0.0,
                source=" vs ".join(dict.fromkeys(lab.source for lab in (winner, *rivals))),
            )
        out = out.with_label(replace(winner, detail=detail))
    return out


def _service_name(url: str) -> str:
    parts = urlsplit(url)
    return f"remote:{parts.hostname}:{parts.port}" if parts.port else f"remote:{parts.hostname}"


def build_remote_sources(remote: str | list[str], options: RemoteSettings, min_confidence: float) -> Any:
    """One `RemoteClassifier` for a single `--remote URL` (as before); a `MultiRemoteSource` for
    several, or for a per-tag one."""
    from .classifier import build_remote_source

    entries = [parse_remote(v) for v in remotes(remote)]
    if len(entries) == 1 and not entries[0][1]:
        return build_remote_source(entries[0][0], options)
    sources = []
    names: set[str] = set()
    for url, tags in entries:
        src = build_remote_source(url, replace(options, tags=tuple(tags)) if tags else options)
        name = _service_name(url)
        while name in names:  # two services behind one host and port
            name += "'"
        names.add(name)
        src.name = name  # recorded as each label's source
        sources.append(src)
    return MultiRemoteSource(sources, min_confidence)
