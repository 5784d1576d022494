"""The `orthovision` command line: a thin Typer layer over the importable core.

Each command group lives in `orthovision_cli.commands.<name>` and registers itself here; the
commands parse options, call the core and render results, nothing more.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from .commands.helpfmt import OrthovisionGroup, take_debug

app = typer.Typer(
    name="orthovision",
    cls=OrthovisionGroup,
    help="Turn JPEG/TIFF orthodontic photographs and film scans into standards-conformant DICOM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, each with `register(app)`. A module missing from an installation is skipped.
COMMAND_MODULES = (
    "convert",
    "classify",
    "train",
    "evaluate",
    "serve",
    "conformance",
    "review",
    "send",
    "dicomdir",
    "watch",
)


def _version(value: bool) -> None:
    if value:
        from .versions import version_lines  # importlib.metadata: only for --version

        for line in version_lines():
            typer.echo(line)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the versions (tool, model pack, pydicom, onnxruntime), then exit.",
    ),
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show tracebacks of unexpected errors (in reports too); also taken after the sub-command.",
    ),
) -> None:
    """orthovision: JPEG/TIFF to DICOM for orthodontics and film scans."""
    if debug:
        os.environ["ORTHOVISION_DEBUG"] = "1"  # inherited by worker processes


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"{__package__}.commands.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__package__}.commands.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    args = take_debug(sys.argv[1:])
    try:
        app(args=args, prog_name="orthovision")
    except Exception as exc:  # a bug: one line for the user, the traceback only with --debug
        if os.environ.get("ORTHOVISION_DEBUG"):
            raise
        from .display import shown
        from .errors import ExitCode

        text = shown(" ".join(str(exc).split())[:300])
        sys.stderr.write(f"internal error: {type(exc).__name__}: {text} (run with --debug for details)\n")
        sys.exit(int(ExitCode.FATAL))


def reference() -> str:
    """docs/cli-reference.md: every command's options as Markdown, from the help itself."""
    import typer.main

    from .commands.helpfmt import reference_markdown

    return reference_markdown(typer.main.get_command(app))


if __name__ == "__main__" and sys.argv[1:] == ["reference"]:
    # python -m orthovision_cli.cli reference > docs/cli-reference.md
    sys.stdout.write(reference())
