"""`orthovision review OUT`: the local review page; `--apply` converts the decided files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..display import shown
from ..errors import ExitCode, OrthovisionError, UsageError, exit_code_for
from .render import Reporter


def review(
    output: Annotated[
        Path, typer.Argument(help="Output folder of an earlier convert (holds orthovision-review.csv).")
    ],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (default: a free one).")] = 0,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Do not open a browser; print the address.")
    ] = False,
    who: Annotated[
        str | None, typer.Option("--who", help="Name recorded with each decision (default: the login name).")
    ] = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help="Convert the decided files now (settings of the last convert), then exit."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="With --apply: print only errors and the exit status.")
    ] = False,
) -> None:
    """Review what the classifier was unsure of in a web page on this machine; decisions apply
    on the next convert (or at once with --apply)."""
    if not output.is_dir():
        typer.echo(f"error: {shown(str(output))} is not a folder", err=True)
        raise typer.Exit(ExitCode.USAGE)
    from ..batch.state import STATE_DIR

    if not (output / STATE_DIR / "state.sqlite").is_file():
        # An input folder, or a typo: a page with nothing on it that blocks helps nobody.
        typer.echo(
            f"error: {shown(str(output))} is not the output folder of a conversion "
            f"(no {STATE_DIR}/state.sqlite); convert first: orthovision convert {shown(str(output))} -o OUT, "
            "then: orthovision review OUT",
            err=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    if apply:
        _apply(output, quiet)
        return
    from ..review.server import serve

    def ready(url: str, n: int) -> None:
        typer.echo(f"orthovision review: {n} file(s) awaiting review at {url}", err=True)
        typer.echo("that address carries this page's token: whoever has it sees the files", err=True)
        typer.echo(
            f"decisions are saved at once to {output / 'orthovision-decisions.csv'}; press Ctrl-C to stop",
            err=True,
        )

    try:
        serve(output.absolute(), port=port, browser=not no_browser, who=who, ready=ready)
    except UsageError as exc:
        typer.echo(f"error: {shown(exc.message)}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    except KeyboardInterrupt:
        typer.echo(
            f"stopped; the decisions are saved: convert them now with `orthovision review {output} --apply` "
            "(or run the same convert again)",
            err=True,
        )


def _apply(output: Path, quiet: bool) -> None:
    from ..batch.runner import run_convert
    from ..review.apply import recall, settled_inputs
    from ..review.questions import applicable_inputs

    reporter = Reporter(quiet=quiet)
    try:
        settings = recall(output.absolute())
        # decided, settled by a batch answer, or by the pack the page taught
        only = applicable_inputs(output.absolute()) | settled_inputs(output.absolute())
        if not only:
            reporter.err.print("no decisions to apply")
            raise typer.Exit(ExitCode.OK)
        summary = run_convert(settings, reporter.event, argv=sys.argv[1:], only=only)
    except OrthovisionError as exc:
        reporter.error(exc.message if isinstance(exc, UsageError) else exc.one_line())
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt as exc:
        reporter.error("interrupted; the output is consistent, run the same command to continue")
        raise typer.Exit(exit_code_for(exc)) from None
    finally:
        reporter.close()
    reporter.summary(summary)
    raise typer.Exit(int(summary.exit_code))


def register(app: typer.Typer) -> None:
    app.command("review")(review)
