"""The one reader of bearer tokens, for `--remote`, `serve` and `conformance`.

A token comes from a file or an environment variable, never from the command line (where it
would show in the process list and shell history), and is never logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError


def read_token(token_env: str | None, token_file: Path | None) -> str | None:
    """The token from `token_file` (preferred) or the variable `token_env`; None when neither is
    given. Raises UsageError for an unreadable or empty file or an unset variable."""
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


def token_option(token_env: str | None, token_file: Path | None) -> str:
    """The option a token error is about, for a command's error message."""
    return "--token-file" if token_file is not None else "--token-env"
