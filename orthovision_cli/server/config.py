"""Settings of the reference service (plain Python: importable without the `[server]` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..fhir.ig import IG_TAG_NAMES
from ..labels.model import TAGS, normalise_tag

TAG_DESCRIPTIONS = {
    "modality": "Modality (0008,0060)",
    "protocol": "Protocol Name (0018,1030): the view, e.g. an ADA-1100 view",
    "body-part": "Body Part Examined (0018,0015)",
    "orientation": "Patient Orientation (0020,0020): rotation/flip that shows the image upright",
}


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    queue_size: int = 32  # waiting Tasks beyond the running ones; more is answered 429
    max_upload_bytes: int = 32 * 1024 * 1024  # the request body (base64 image + JSON)
    token: str | None = None  # bearer token; None: no authentication
    retention: float = 3600.0  # seconds results are kept after a Task ends
    retry_after: int = 1  # seconds, sent with 429
    sse_keepalive: float = 15.0
    # A hostile network (slow or idle clients) must not hold the service's connections:
    header_timeout: float = 10.0  # the request line and headers, from connect (or last answer)
    idle_timeout: float = 10.0  # between two chunks of a request body
    body_timeout: float = 120.0  # a whole request body
    keepalive_timeout: float = 5.0  # an idle keep-alive connection
    max_connections: int = 256  # open at once; past it the longest idle ones are closed
    # Host names clients use beyond IP addresses and localhost (DNS rebinding); "*": any.
    allow_hosts: Sequence[str] = field(default_factory=tuple)
    tags: Sequence[str] = field(default_factory=tuple)  # IG names; empty: what the model knows
    model_name: str = "model"
    model_version: str = "0"

    def __repr__(self) -> str:  # never show the token
        token = "***" if self.token else None
        return f"ServerConfig(host={self.host!r}, port={self.port}, token={token})"


def classifier_tags(classifier: Any, wanted: Sequence[str] = ()) -> dict[str, str]:
    """The IG tag names the service advertises: `wanted` (if given) within what the classifier
    declares in its `tags` attribute (all four seam tags when it declares none)."""
    known = [normalise_tag(t) for t in getattr(classifier, "tags", None) or TAGS]
    seam = [t for t in TAGS if t in known]
    if wanted:
        asked = [normalise_tag(w) for w in wanted]
        bad = [w for w, a in zip(wanted, asked, strict=True) if a is None or a not in seam]
        if bad:
            raise ValueError(f"the model cannot classify: {', '.join(bad)}")
        seam = [t for t in seam if t in asked]
    return {IG_TAG_NAMES[t]: TAG_DESCRIPTIONS[IG_TAG_NAMES[t]] for t in seam}
