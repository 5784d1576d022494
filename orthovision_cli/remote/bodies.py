"""Request bodies for an IG service: built once, replayable for retries, streamed so that a large
scan is never held as base64 text and JSON at once.

Privacy: a body holds the pixels from `sanitize.pixels_only` and the tags asked for, nothing else
(no file name, path or patient value).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..fhir import ig
from ..fhir.validate import fhir_parse

B64_CHUNK = 3 * 64 * 1024  # raw bytes per streamed base64 piece (a multiple of 3)
_SENTINEL = "T1ZDTElTRU5USU5FTA=="  # valid base64, spliced out for the streamed image


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
