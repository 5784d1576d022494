"""`orthovision watch INBOX -o OUT`: convert files as they arrive (a hot folder).

Takes every option of `convert` (same state, names, review list, reports), plus `--once`,
`--interval` and `--settle`.
"""

from __future__ import annotations

import inspect
import sys
import typing
from typing import Annotated, Any

import typer

from ..errors import ExitCode, OrthovisionError, OutputError, UsageError
from .convert import _settings, convert
from .render import Reporter, safe_line

# Not for a hot folder: one-off run switches and the terminal prompt.
_NOT_FOR_WATCH = ("force", "dry_run", "as_json", "confirm")


def _watch(**opts: Any) -> None:
    from ..review.watch import HotFolder, watch

    once, interval, settle = opts.pop("once"), opts.pop("interval"), opts.pop("settle")
    opts.update(force=False, dry_run=False, as_json=False)
    reporter = Reporter(quiet=opts["quiet"], verbose=opts["verbose"])

    def on_run(summary: Any) -> None:
        reporter.close()
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items()) if s != "unchanged")
        reporter.err.print(
            f"orthovision watch: {counts or 'nothing new'}; exit code {int(summary.exit_code)}"
        )

    def on_wait(text: str) -> None:
        reporter.err.print(f"waiting: {safe_line(text)}")

    try:
        if interval <= 0 or settle < 0:
            raise UsageError("--interval must be positive and --settle zero or more")
        settings = _settings(opts)
        folder = HotFolder(settings, settle=settle, convert=_converter(opts))
        if not once and not opts["quiet"]:
            reporter.err.print(
                f"orthovision watch: watching {safe_line(', '.join(map(str, settings.inputs)))} "
                f"every {interval:g} s into {safe_line(str(settings.output))}; Ctrl-C stops"
            )
        code = watch(
            folder,
            interval=interval,
            once=once,
            on_event=reporter.event,
            on_run=on_run,
            on_wait=on_wait,
            argv=sys.argv[1:],
        )
    except UsageError as exc:
        reporter.error(exc.message)
        raise typer.Exit(ExitCode.USAGE) from None
    except OutputError as exc:
        reporter.error(exc.message)
        raise typer.Exit(ExitCode.FATAL) from None
    except OrthovisionError as exc:
        reporter.error(exc.one_line())
        raise typer.Exit(ExitCode.FATAL) from None
    finally:
        reporter.close()
    if once and code == ExitCode.NOTHING_FOUND:
        reporter.err.print(
            f"orthovision watch: no image file in {safe_line(', '.join(map(str, settings.inputs)))}; "
            f"exit code {int(code)}"
        )
    elif code == ExitCode.INTERRUPTED:
        reporter.err.print(
            "orthovision watch: stopped (Ctrl-C); the output is consistent: start it again to go on, "
            f"or decide the files awaiting review with `orthovision review {safe_line(str(settings.output))}`"
        )
    elif not once and not opts["quiet"]:
        reporter.err.print("orthovision watch: stopped")
    raise typer.Exit(int(code))


def _converter(opts: dict[str, Any]) -> Any:
    """`run_convert`, or with --send: each run also sends what it wrote, as `convert --send`."""
    from ..batch.runner import run_convert

    if not opts.get("send"):
        return run_convert

    def convert_and_send(settings: Any, on_event: Any, *, argv: list[str], only: Any) -> Any:
        from .send import sending

        with sending(settings.output, opts["send"], opts, exit_line=False) as feed:
            summary = run_convert(settings, feed.chain(on_event), argv=argv, only=only)
        summary.exit_code = feed.exit_code(summary.exit_code)
        feed.print_summary()
        return summary

    return convert_and_send


def _signature() -> tuple[inspect.Signature, dict[str, Any]]:
    """`convert`'s options (less --force, --dry-run, --json) and the watch options."""
    hints = typing.get_type_hints(convert, include_extras=True)
    params = [
        p.replace(annotation=hints[p.name])
        for p in inspect.signature(convert).parameters.values()
        if p.name not in _NOT_FOR_WATCH
    ]
    kw = inspect.Parameter.KEYWORD_ONLY
    extra = {
        "once": (
            bool,
            False,
            typer.Option(
                "--once", help="Look twice, --settle apart, convert what has settled, exit (for cron)."
            ),
        ),
        "interval": (float, 5.0, typer.Option("--interval", help="Seconds between looks at the inbox.")),
        "settle": (
            float,
            2.0,
            typer.Option(
                "--settle", help="Seconds a file's size and time must stay unchanged before it is read."
            ),
        ),
    }
    for name, (typ, default, option) in extra.items():
        params.append(inspect.Parameter(name, kw, default=default, annotation=Annotated[typ, option]))
    params = [p.replace(kind=kw) for p in params]
    annotations = {p.name: p.annotation for p in params}
    return inspect.Signature(params), annotations


def register(app: typer.Typer) -> None:
    signature, annotations = _signature()

    def watch_command(**opts: Any) -> None:
        """Convert files as they arrive in a folder (a hot folder); every option of convert applies
        except the one-off --force, --dry-run, --confirm and --json."""
        _watch(**opts)

    watch_command.__signature__ = signature  # type: ignore[attr-defined]
    watch_command.__annotations__ = {**annotations, "return": None}
    app.command("watch")(watch_command)
