"""`orthovision evaluate`: accuracy, confusion and calibration of a pack on labelled images."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..defaults import DEFAULT_MIN_CONFIDENCE
from ..errors import ModelPackError, UsageError, exit_code_for


def evaluate(
    labelled: Annotated[Path, typer.Argument(help="Folder laid out as <tag>/<value>/**/<image>.")],
    models: Annotated[
        Path | None, typer.Option("--models", help="Model pack (default: the embedded pack).")
    ] = None,
    min_confidence: Annotated[
        float | None, typer.Option("--min-confidence", help="Threshold for 'accepted' labels.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
) -> None:
    """Measure a pack on labelled images it never saw: accuracy per tag, confusion matrix,
    calibration of the confidences."""
    from ..labels.local import load_pack
    from ..labels.local.evaluate import evaluate as run

    threshold = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
    try:
        clf = load_pack(models)
        report = run(labelled, clf, min_confidence=threshold)
    except (UsageError, ModelPackError) as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        raise typer.Exit(exit_code_for(exc)) from None
    data = report.as_dict()
    if as_json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    _print(data)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.1%}"


def _print(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"pack {data['pack']} on {data['folder']}")
    for col in ("tag", "images", "accuracy", "abstained", "accepted", "accepted accuracy", "ECE"):
        summary.add_column(col)
    for tag, s in data["tags"].items():
        summary.add_row(
            tag,
            str(s["images"]),
            _pct(s["accuracy"]),
            str(s["abstained"]),
            f"{s['accepted']} (>= {s['min_confidence']})",
            _pct(s["accepted_accuracy"]),
            "-" if s["ece"] is None else f"{s['ece']:.3f}",
        )
    console.print(summary)
    for tag, s in data["tags"].items():
        preds = sorted({p for row in s["confusion"].values() for p in row})
        cm = Table(title=f"{tag}: confusion (rows: truth, columns: predicted)")
        cm.add_column("truth")
        for p in preds:
            cm.add_column(p)
        for truth, row in sorted(s["confusion"].items()):
            cm.add_row(truth, *[str(row.get(p, 0)) for p in preds])
        console.print(cm)
        cal = Table(title=f"{tag}: calibration")
        for col in ("confidence", "count", "mean confidence", "accuracy"):
            cal.add_column(col)
        for b in s["calibration"]:
            cal.add_row(b["bin"], str(b["count"]), f"{b['mean_confidence']:.3f}", _pct(b["accuracy"]))
        console.print(cal)
    for e in data["errors"]:
        console.print(f"unreadable: {e}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
