"""`orthovision train`: fit heads on a sorted archive and write a model pack."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ExitCode, ModelPackError, UsageError, exit_code_for


def train(
    labelled: Annotated[
        Path | None,
        typer.Argument(help="Folder laid out as <tag>/<value>/**/<image>, e.g. protocol/EV01/."),
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder of the new pack.")] = Path("pack"),
    base: Annotated[
        Path | None,
        typer.Option(
            "--base", help="Base pack to grow (default: the embedded pack); --models says the same."
        ),
    ] = None,
    models: Annotated[Path | None, typer.Option("--models", hidden=True, help="Same as --base.")] = None,
    from_decisions: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-decisions",
            help="Also learn from the review decisions of this output folder (repeatable).",
        ),
    ] = None,
    unlabelled: Annotated[
        Path | None,
        typer.Option("--unlabelled", help="Upright images for a self-supervised orientation head."),
    ] = None,
    orientation_for: Annotated[
        str | None,
        typer.Option(
            "--orientation-for",
            help="Use the orientation head on: photograph, radiograph or any (default: the kind "
            "of the unlabelled images).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the leave-one-out folds.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Train heads on your own images (no torch needed) and write a pack for `convert --models`."""
    from ..labels.local.train import train_pack

    base = base or models  # `--models` as in convert and evaluate, shown once as --base

    if orientation_for not in (None, "photograph", "radiograph", "any"):
        typer.echo("error: --orientation-for must be photograph, radiograph or any", err=True)
        raise typer.Exit(ExitCode.USAGE)

    def progress(what: str, done: int, total: int) -> None:
        if not as_json and (done == total or done % 50 == 0):
            typer.echo(f"{what}: {done}/{total}", err=True)

    radiographs: str | None = None  # film or digital, as the person answered for the batch
    try:
        with tempfile.TemporaryDirectory(prefix="orthovision-decided-") as tmp:
            if from_decisions:
                from ..review.teach import answered_radiographs, build_layout

                used, notes = build_layout(Path(tmp), list(from_decisions), labelled)
                radiographs = answered_radiographs(list(from_decisions))
                for note in notes:
                    typer.echo(f"  {note}", err=True)
                typer.echo(f"{used} decided image(s) from {len(from_decisions)} output folder(s)", err=True)
                labelled = Path(tmp)
            report = train_pack(
                labelled,
                output,
                base=base,
                unlabelled=unlabelled,
                orientation_applies_to=orientation_for,
                seed=seed,
                progress=progress,
                radiographs=radiographs,
            )
    except (UsageError, ModelPackError) as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        raise typer.Exit(exit_code_for(exc)) from None
    if as_json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    typer.echo(f"pack written: {report.pack}")
    for h in report.heads:
        acc = h.held_out_accuracy
        measured = (
            f"leave-one-out accuracy {acc:.1%} ({h.held_out_correct}/{h.held_out})"
            if acc is not None
            else "not measured (too few images to leave some out)"
        )
        typer.echo(f"  {h.name}: {len(h.classes)} classes {h.classes}; {measured}")
        if h.skipped:
            typer.echo(f"    skipped (fewer than 2 images): {', '.join(h.skipped)}")
    fact = report.taught.get("facts", {}).get("radiographs")
    if fact:
        typer.echo(f"  radiographs of this archive: {fact} (a fact for files that do not state it)")
    for kind, tags in sorted(report.taught.get("priors", {}).items()):
        shares = "; ".join(f"{tag} " + ", ".join(f"{v} {n}" for v, n in c.items()) for tag, c in tags.items())
        typer.echo(f"  taught {kind}s: {shares}")
    for line in report.unreadable:
        typer.echo(f"  unreadable: {line}", err=True)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
