"""Waiting politely: exponential backoff with jitter, Retry-After, and Server-Sent Events."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import jsonlimits
from .errors import RemoteBadResponse, RemoteDeadline


@dataclass(frozen=True)
class Backoff:
    """Delays first, first*factor, ... up to `cap`, each with +-`jitter` so that many clients
    (or many images) do not poll in lockstep."""

    first: float = 0.05
    factor: float = 1.6
    cap: float = 2.0
    jitter: float = 0.2

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        r = rng or random
        delay = self.first
        while True:
            yield delay * (1 + r.uniform(-self.jitter, self.jitter))
            delay = min(self.cap, delay * self.factor)


# Retries of refused/throttled requests start slower than polls.
RETRY_BACKOFF = Backoff(first=0.25, factor=2.0, cap=10.0, jitter=0.5)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def sse_data(lines: Iterable[str]) -> Iterator[Any]:
    """The JSON payloads of an event stream (`data:` lines joined per event)."""
    buf: list[str] = []
    for line in lines:
        if line == "":
            if buf:
                text = "\n".join(buf)
                buf.clear()
                try:
                    yield jsonlimits.loads(text)
                except jsonlimits.JsonLimitError:
                    continue  # not a resource: keepalive or an event this client does not know
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            buf.append(value[1:] if value.startswith(" ") else value)
    if buf:
        try:
            yield jsonlimits.loads("\n".join(buf))
        except jsonlimits.JsonLimitError:
            return


MAX_SSE_LINE = 1 << 20  # an event's line; a Task resource is a few kilobytes


def bounded_lines(chunks: Iterable[bytes], deadline: float) -> Iterator[str]:
    """The lines of an event stream, each at most MAX_SSE_LINE bytes, until `deadline`
    (monotonic; checked at every chunk, keep-alives included): RemoteDeadline past it,
    RemoteBadResponse for a longer line."""
    pending = b""
    for chunk in chunks:
        if time.monotonic() > deadline:
            raise RemoteDeadline("per-image deadline reached while following the Task's events")
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
        if len(pending) > MAX_SSE_LINE:
            raise RemoteBadResponse(f"an event stream line longer than {MAX_SSE_LINE:,} bytes")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")
