"""`orthovision send`: deliver a conversion's DICOM files to PACS nodes (C-STORE, STOW-RS)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ..defaults import DEFAULT_ASSOCIATIONS
from ..display import shown
from ..errors import ExitCode, OrthovisionError, OutputError, UsageError
from ..tokens import read_token
from .remote_options import CaBundle, Header, Insecure, TokenEnv, TokenFile

To = Annotated[
    list[str],
    typer.Option(
        "--to",
        help="Destination (repeatable): dicom://CALLED_AE@host:port, dicoms://… (TLS) or http(s)://host/…/dicom-web (STOW-RS).",
    ),
]
CallingAe = Annotated[str, typer.Option("--calling-ae", help="Our AE title in DIMSE associations.")]
Associations = Annotated[
    int,
    typer.Option(
        "--associations",
        help="Associations (DIMSE) or requests (STOW-RS) in parallel per destination; "
        "a DIMSE peer that takes fewer gets what it takes.",
    ),
]
Batch = Annotated[int, typer.Option("--batch", help="STOW-RS: instances per request at most.")]
BatchMb = Annotated[float, typer.Option("--batch-mb", help="STOW-RS: megabytes per request at most.")]
SendTimeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait for a peer's answer.")]
Retries = Annotated[
    int, typer.Option("--retries", help="Retries of a lost connection, 429 or 5xx before giving up.")
]
Verify = Annotated[
    bool,
    typer.Option(
        "--verify", help="Ask each destination (C-FIND / QIDO-RS) what it holds first; re-send what it lost."
    ),
]
ClientCert = Annotated[
    Path | None,
    typer.Option(
        "--client-cert",
        help="Our TLS client certificate (PEM; may hold the key too), for servers that require one.",
    ),
]
ClientKey = Annotated[
    Path | None, typer.Option("--client-key", help="The unencrypted PEM key of --client-cert.")
]
BasicAuthEnv = Annotated[
    str | None,
    typer.Option("--basic-auth-env", help="Environment variable holding user:password for HTTP basic auth."),
]


def send(
    output: Annotated[Path, typer.Argument(help="Output folder of `orthovision convert`.")],
    to: To,
    calling_ae: CallingAe = "ORTHOVISION",
    associations: Associations = DEFAULT_ASSOCIATIONS,
    batch: Batch = 20,
    batch_mb: BatchMb = 32.0,
    timeout: SendTimeout = 30.0,
    retries: Retries = 3,
    verify: Verify = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send again what the ledger says is stored.")
    ] = False,
    reject_superseded: Annotated[
        bool,
        typer.Option(
            "--reject-superseded",
            help="Where a superseded instance was delivered, send an IHE IOCM rejection note "
            "(Key Object Selection, 'Rejected for Patient Safety Reasons') naming it.",
        ),
    ] = False,
    token_env: TokenEnv = None,
    token_file: TokenFile = None,
    basic_auth_env: BasicAuthEnv = None,
    header: Header = None,
    ca_bundle: CaBundle = None,
    client_cert: ClientCert = None,
    client_key: ClientKey = None,
    insecure: Insecure = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Print only failures and the exit status.")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="A line per instance.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
) -> None:
    """Send the DICOM files of OUT to each destination; a re-run sends only what is missing."""
    from ..send.session import run_send

    printer = Printer(quiet=quiet or as_json, verbose=verbose)
    try:
        opts = send_options(locals())
        summary = run_send(output, to, opts, printer.result, argv=sys.argv[1:])
    except UsageError as exc:
        _err(exc.message)
        raise typer.Exit(ExitCode.USAGE) from None
    except OutputError as exc:
        _err(exc.one_line())
        raise typer.Exit(ExitCode.FATAL) from None
    except OrthovisionError as exc:
        _err(exc.one_line())
        raise typer.Exit(ExitCode.FATAL) from None
    except KeyboardInterrupt:
        _err("interrupted; what was confirmed is recorded, run the same command to continue")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=1))
    else:
        printer.summary(summary)
    raise typer.Exit(int(summary.exit_code))


def send_options(opts: dict[str, Any]) -> Any:
    """SendOptions from the option values of `send` (or `convert --send-*`)."""
    from ..send.options import SendOptions, tls_context
    from ..send.stow import env_basic
    from .remote_options import parse_headers

    token = None
    if opts.get("token_env") or opts.get("token_file"):
        token = read_token(opts.get("token_env"), opts.get("token_file"))
    basic = env_basic(opts["basic_auth_env"]) if opts.get("basic_auth_env") else None
    tls = tls_context(
        opts.get("ca_bundle"),
        opts.get("client_cert"),
        opts.get("client_key"),
        insecure=bool(opts.get("insecure")),
    )
    return SendOptions(
        calling_ae=opts.get("calling_ae") or "ORTHOVISION",
        associations=opts.get("associations") or DEFAULT_ASSOCIATIONS,
        batch=opts.get("batch") or 20,
        batch_mb=opts.get("batch_mb") or 32.0,
        timeout=opts.get("timeout") or 30.0,
        retries=3 if opts.get("retries") is None else opts["retries"],
        verify=bool(opts.get("verify")),
        force=bool(opts.get("force")),
        reject_superseded=bool(opts.get("reject_superseded")),
        token=token,
        basic=basic,
        tls=tls,
        insecure=bool(opts.get("insecure")),
        headers=parse_headers(opts.get("header") or []),
    )


class _Feed:
    """`convert --send`'s call site: a no-op without --send."""

    def __init__(self, feed: Any = None, printer: Printer | None = None) -> None:
        self.feed = feed
        self.printer = printer

    @property
    def summary(self) -> Any:
        return self.feed.summary if self.feed is not None else None

    def chain(self, event: Any) -> Any:
        if self.feed is None:
            return event

        def both(kind: str, done: int, total: int, result: Any) -> None:
            event(kind, done, total, result)
            self.feed.event(kind, done, total, result)

        return both

    def exit_code(self, convert_code: ExitCode) -> ExitCode:
        """The conversion's code when it did not succeed, else what sending says."""
        if self.feed is None or convert_code != ExitCode.OK:
            return convert_code
        send_code = self.feed.summary.exit_code
        return ExitCode.OK if send_code == ExitCode.NOTHING_FOUND else send_code

    def print_summary(self) -> None:
        if self.feed is not None and self.printer is not None:
            self.printer.summary(self.feed.summary)


@contextlib.contextmanager
def sending(
    output: Path | None, destinations: list[str] | None, opts: dict[str, Any], *, exit_line: bool = True
) -> Iterator[_Feed]:
    """For `convert --send`: a feed whose `chain(event)` also queues each durable instance.

    `exit_line=False` (`watch --send`): the caller prints the one exit-code line of each run."""
    if not destinations:
        yield _Feed()
        return
    from ..send.feed import ConvertFeed

    if output is None:
        raise UsageError("--send needs the output folder (-o)")
    if opts.get("dry_run"):
        raise UsageError("--send and --dry-run do not go together")
    values = {
        "calling_ae": opts.get("calling_ae"),
        "associations": opts.get("send_associations"),
        "token_env": opts.get("send_token_env"),
        "token_file": opts.get("send_token_file"),
        "basic_auth_env": opts.get("send_basic_auth_env"),
    }
    quiet = bool(opts.get("quiet") or opts.get("as_json"))
    printer = Printer(quiet=quiet, verbose=bool(opts.get("verbose")) and not quiet, exit_line=exit_line)
    with ConvertFeed(output, destinations, send_options(values), printer.result, sys.argv[1:]) as feed:
        yield _Feed(feed, printer)


def _err(text: str) -> None:
    typer.echo(f"error: {shown(text)}", err=True)


class Printer:
    """One line per failed instance (even with --quiet: cron mails only trouble), per instance
    with --verbose; a summary per destination."""

    def __init__(self, *, quiet: bool, verbose: bool, exit_line: bool = True) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.exit_line = exit_line
        self._lock = threading.Lock()

    def result(self, res: Any) -> None:
        # A superseded instance the destination still holds is trouble too, even with --quiet.
        trouble = res.status == "failed" or (res.status == "superseded" and res.reason == "delivered")
        if trouble or (self.verbose and not self.quiet):
            why = f": {res.reason}: {res.message}" if res.reason else ""
            with self._lock:
                line = shown(f"{res.status}: {res.rel} -> {res.destination}{why}")
                print(line, file=sys.stderr, flush=True)

    def summary(self, summary: Any) -> None:
        for dest, line in summary.destination_errors.items():
            print(shown(f"error: {dest}: {line}"), file=sys.stderr)
        for line in summary.unreadable:
            print(shown(f"failed: {line}"), file=sys.stderr)
        for line in summary.warnings:
            print(shown(f"warning: {line}"), file=sys.stderr)
        per: dict[str, dict[str, int]] = {}
        for r in summary.results:
            per.setdefault(r.destination, {}).setdefault(r.status, 0)
            per[r.destination][r.status] += 1
        if not self.quiet:
            for dest, counts in per.items():
                text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                print(f"{dest}: {text}", file=sys.stderr)
        code = summary.exit_code
        if not self.exit_line:
            if not self.quiet:
                print(f"sent: {summary.instances} instance(s) in {summary.seconds:.1f} s", file=sys.stderr)
            return
        if not self.quiet or code != 0:
            print(
                f"exit code {int(code)} ({code.name.lower().replace('_', ' ')}), "
                f"{summary.instances} instance(s) in {summary.seconds:.1f} s",
                file=sys.stderr,
            )


def register(app: typer.Typer) -> None:
    app.command("send")(send)
