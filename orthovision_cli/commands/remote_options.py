"""The `--remote` options shared by `convert` and `classify`: declared once, read once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import tokens
from ..config import RemoteSettings
from ..errors import UsageError

Remote = Annotated[
    list[str] | None,
    typer.Option(
        "--remote",
        help="Base URL of an Orthovision IG service to classify with; repeat for several (fused per tag), or TAG[,TAG]=URL to ask one only for some tags.",
    ),
]
RemoteTags = Annotated[
    list[str] | None,
    typer.Option(
        "--remote-tag", help="Ask the service only for this tag (repeatable); local models do the rest."
    ),
]
TokenEnv = Annotated[
    str | None, typer.Option("--token-env", help="Environment variable holding the bearer token.")
]
TokenFile = Annotated[Path | None, typer.Option("--token-file", help="File holding the bearer token.")]
Header = Annotated[
    list[str] | None,
    typer.Option("--header", help="Extra HTTP header 'Name: value' for gateways (repeatable)."),
]
CaBundle = Annotated[
    Path | None, typer.Option("--ca-bundle", help="CA certificates to trust for the service's TLS.")
]
Insecure = Annotated[
    bool, typer.Option("--insecure", help="Do not verify the service's TLS certificate (testing only).")
]
Timeout = Annotated[
    float | None, typer.Option("--timeout", help="Per-request timeout in seconds (default 30).")
]
Deadline = Annotated[
    float | None, typer.Option("--deadline", help="Seconds one image may take at the service, in all.")
]
Concurrency = Annotated[
    int | None, typer.Option("--concurrency", help="Images in flight to the service at once (default 4).")
]
PostToBase = Annotated[
    bool, typer.Option("--post-to-base", help="POST transactions to [base] instead of [base]/Bundle.")
]


def read_token(token_env: str | None, token_file: Path | None) -> str | None:
    """`tokens.read_token` for `serve` and `conformance`, its errors shown as Typer shows a bad
    option."""
    try:
        return tokens.read_token(token_env, token_file)
    except UsageError as exc:
        hint = tokens.token_option(token_env, token_file)
        raise typer.BadParameter(exc.message, param_hint=hint) from None


def remote_settings(opts: dict[str, Any], base: RemoteSettings | None = None) -> RemoteSettings:
    """The run's RemoteSettings: a command's option values over `base` (a TOML table's), checked
    once: a bad value is a usage error (exit 2, one line)."""
    changes: dict[str, Any] = {}
    for name in ("token_env", "token_file", "ca_bundle", "timeout", "deadline", "concurrency"):
        if opts.get(name) is not None:
            changes[name] = opts[name]
    if opts.get("remote_tags"):
        changes["tags"] = tuple(opts["remote_tags"])
    if opts.get("insecure"):
        changes["verify"] = False
    if opts.get("post_to_base"):
        changes["post_to_base"] = True
    if opts.get("header"):
        changes["headers"] = parse_headers(opts["header"])
    return replace(base or RemoteSettings(), **changes).check()


def parse_headers(values: list[str]) -> dict[str, str]:
    """`--header 'Name: value'` (repeatable), for `--remote` and `send`."""
    headers = {}
    for h in values:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {h!r} must look like 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers
