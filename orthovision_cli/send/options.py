"""`SendOptions`: how to send (AE title, parallel associations, STOW-RS batches, timeouts,
retries, credentials, TLS), checked once before anything is sent."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from ..errors import UsageError
from ..remote.poll import RETRY_BACKOFF, Backoff
from .destinations import check_ae_title


@dataclass
class SendOptions:
    calling_ae: str = "ORTHOVISION"
    associations: int = 1
    batch: int = 20
    batch_mb: float = 32.0
    timeout: float = 30.0
    retries: int = 3
    verify: bool = False
    force: bool = False
    token: str | None = None
    basic: tuple[str, str] | None = None
    tls: ssl.SSLContext | None = None  # None: the system's CAs
    insecure: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    backoff: Backoff = RETRY_BACKOFF

    def check(self) -> None:
        check_ae_title(self.calling_ae, "--calling-ae")
        if self.associations < 1 or self.associations > 64:
            raise UsageError("--associations must be between 1 and 64")
        if self.batch < 1 or self.batch_mb <= 0:
            raise UsageError("--batch must be >= 1 and --batch-mb > 0")
        if self.timeout <= 0 or self.retries < 0:
            raise UsageError("--timeout must be > 0 and --retries >= 0")
