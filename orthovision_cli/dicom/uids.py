"""UIDs that are stable across re-runs yet cannot be traced back to patient data.

Every UID is `2.25.<decimal of 128 bits of HMAC-SHA256(secret, parts)>`: the same input and
settings give the same UID again, while the secret (kept in the output's state folder, never in
the DICOM) makes it impossible to recompute a UID from a patient ID or a file's content.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

UID_ROOT = "2.25."
SECRET_BYTES = 32


def uid_from(secret: bytes, *parts: str) -> str:
    # A folder whose name is not UTF-8 (a Latin-1 system's) is part of a study key: its exact
    # bytes (the same bytes as before for every UTF-8 name, so no UID changes).
    msg = "\x1f".join(parts).encode("utf-8", "surrogateescape")
    digest = hmac.new(secret, msg, hashlib.sha256).digest()[:16]
    # Clear the top bit so the number stays well within 39 digits (64-char UID limit).
    value = int.from_bytes(digest, "big") & ((1 << 127) - 1)
    return f"{UID_ROOT}{value}"


def load_or_create_secret(path: Path) -> bytes:
    """The UID key of an output tree; created once (mode 0600) and reused by every later run."""
    try:
        data = path.read_bytes()
        if len(data) >= 16:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(SECRET_BYTES)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    try:
        # Link, not replace: if another process won the race, keep its key.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_bytes()
