"""`orthovision dicomdir`: the converted instances as a DICOM File-set for a USB stick or CD."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..display import shown
from ..errors import ExitCode, OrthovisionError, OutputError, UsageError


def dicomdir(
    output: Annotated[Path, typer.Argument(help="Output folder of `orthovision convert`.")],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="Folder for the File-set (default: OUT/media). An earlier File-set there is replaced.",
        ),
    ] = None,
    patient_id: Annotated[
        list[str] | None, typer.Option("--patient-id", help="Only this patient (repeatable).")
    ] = None,
    fileset_id: Annotated[
        str, typer.Option("--fileset-id", help="File-set ID (0004,1130), up to 16 characters.")
    ] = "ORTHOVISION",
) -> None:
    """Write a DICOMDIR and copies of the instances with IDs-only names (PS3.10 File-set)."""
    from ..send.media import write_fileset
    from ..send.scan import find_files

    folder = to if to is not None else output / "media"
    try:
        if not output.is_dir():
            raise UsageError(f"{output} is not a folder (give the output folder of a conversion)")
        files = find_files(output)
        summary = write_fileset(files, folder, fileset_id=fileset_id, patient_ids=patient_id or ())
    except UsageError as exc:
        typer.echo(f"error: {shown(exc.message)}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    except (OutputError, OrthovisionError) as exc:
        typer.echo(f"error: {shown(exc.one_line())}", err=True)
        raise typer.Exit(ExitCode.FATAL) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing written (an earlier File-set at the target is kept)", err=True)
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    for line in summary.skipped:
        typer.echo(shown(f"failed: {line}"), err=True)
    for line in summary.invented:
        typer.echo(shown(f"invented for the DICOMDIR records: {line}"), err=True)
    if not summary.added:
        typer.echo("no instance to write" + (" for these patients" if patient_id else ""), err=True)
        raise typer.Exit(ExitCode.NOTHING_FOUND if not summary.skipped else ExitCode.FATAL)
    typer.echo(
        f"{summary.folder / 'DICOMDIR'}: {summary.added} instance(s), {summary.studies} "
        f"study(ies), {summary.patients} patient(s)",
        err=True,
    )
    raise typer.Exit(ExitCode.SOME_FAILED if summary.skipped else ExitCode.OK)


def register(app: typer.Typer) -> None:
    app.command("dicomdir")(dicomdir)
