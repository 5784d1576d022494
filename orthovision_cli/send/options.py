"""`SendOptions`: how to send (AE title, parallel associations, STOW-RS batches, timeouts,
retries, credentials, TLS), checked once before anything is sent."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from ..defaults import DEFAULT_ASSOCIATIONS
from ..errors import UsageError
from ..remote.poll import RETRY_BACKOFF, Backoff
from .destinations import check_ae_title


@dataclass
class SendOptions:
    calling_ae: str = "ORTHOVISION"
    associations: int = DEFAULT_ASSOCIATIONS
    batch: int = 20
    batch_mb: float = 32.0
    timeout: float = 30.0
    retries: int = 3
    verify: bool = False
    force: bool = False
    reject_superseded: bool = False  # an IOCM rejection note where a superseded one was delivered
    token: str | None = None
    basic: tuple[str, str] | None = None
    tls: ssl.SSLContext | None = None  # None: the system's CAs, no client certificate (tls_context)
    insecure: bool = False  # STOW-RS without `tls`: do not verify the server's certificate
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


def tls_context(
    ca_bundle: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    *,
    insecure: bool = False,
) -> ssl.SSLContext | None:
    """The TLS context for `https://` and `dicoms://` peers from `--ca-bundle`, `--client-cert`,
    `--client-key` and `--insecure`; None when none is given (the system's CAs, no client
    certificate). Raises UsageError naming the file that cannot be used."""
    if client_key is not None and client_cert is None:
        raise UsageError("--client-key needs --client-cert")
    if ca_bundle is None and client_cert is None and not insecure:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot use the CA bundle {ca_bundle}: {exc}") from exc
    if client_cert is not None:
        try:
            # No passphrase prompt (a cron job has no terminal): an encrypted key is refused.
            ctx.load_cert_chain(client_cert, client_key, password=lambda: b"")
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"cannot use the client certificate {client_cert}"
                f"{f' with the key {client_key}' if client_key else ''}: {exc}"
                " (PEM certificate, unencrypted PEM key)"
            ) from exc
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
