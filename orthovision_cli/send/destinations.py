"""Where to send: `dicom://CALLED_AE@host:port` (DIMSE) or `http(s)://.../dicom-web` (STOW-RS)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ..errors import UsageError

AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash, no control


@dataclass(frozen=True)
class Destination:
    kind: str  # "dimse" or "stow"
    text: str  # as the user gave it (no credentials: they are refused)
    called_ae: str = ""
    host: str = ""
    port: int = 0
    tls: bool = False
    url: str = ""  # DICOMweb base (…/dicom-web), without a trailing slash

    @property
    def key(self) -> str:
        """The name the ledger files results under: stable across spellings of the same peer."""
        if self.kind == "dimse":
            scheme = "dicoms" if self.tls else "dicom"
            return f"{scheme}://{self.called_ae}@{self.host.lower()}:{self.port}"
        return self.url

    def __str__(self) -> str:
        return self.key


def check_ae_title(value: str, what: str) -> str:
    if not AE_TITLE.match(value) or not value.strip():
        raise UsageError(
            f"{what} {value!r} is not a DICOM AE title (1-16 printable characters, no backslash)"
        )
    return value.strip()


def parse_destination(text: str) -> Destination:
    """Parse `--to`. Raises UsageError with what is wrong."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme in ("dicom", "dicoms", "dicom+tls"):
        if not parts.username or not parts.hostname or parts.password is not None:
            raise UsageError(f"--to {text!r}: write a DIMSE peer as dicom://CALLED_AE@host:port")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not port:
            raise UsageError(f"--to {text!r}: the port is missing or not a number (dicom://AE@host:104)")
        if parts.path not in ("", "/") or parts.query:
            raise UsageError(f"--to {text!r}: a DIMSE peer has no path or query")
        ae = check_ae_title(parts.username, "called AE title")
        return Destination("dimse", text, called_ae=ae, host=parts.hostname, port=port, tls=scheme != "dicom")
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise UsageError(f"--to {text!r}: the URL has no host")
        if parts.username or parts.password:
            raise UsageError(
                "put credentials in --token-env/--token-file or --basic-auth-env, not in the URL"
            )
        path = parts.path.rstrip("/")
        if path.endswith("/studies"):  # a STOW-RS endpoint given in full: keep its base
            path = path[: -len("/studies")]
        url = urlunsplit((scheme, parts.netloc, path, parts.query, ""))
        return Destination("stow", text, url=url)
    raise UsageError(
        f"--to {text!r}: use dicom://CALLED_AE@host:port (C-STORE) or http(s)://host/…/dicom-web (STOW-RS)"
    )
