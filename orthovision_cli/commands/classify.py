"""`orthovision classify`: labels for images as a table, CSV or JSON, without converting."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ExitCode, ModelPackError, UsageError
from ..labels.model import Labels
from .remote_options import (
    CaBundle,
    Concurrency,
    Deadline,
    Header,
    Insecure,
    PostToBase,
    Remote,
    RemoteTags,
    Timeout,
    TokenEnv,
    TokenFile,
    remote_options,
)

FORMATS = ("table", "csv", "json")
TAG_COLUMNS = ("modality", "protocol", "body_part", "orientation")
BATCH = 16


def classify(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and folders (recursive).")],
    models: Annotated[
        Path | None,
        typer.Option("--models", help="Model pack folder (default: the embedded pack)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    min_confidence: Annotated[
        float | None,
        typer.Option("--min-confidence", help="Mark labels below this confidence for review."),
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Glob of files to take (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Glob of files to leave out (repeatable).")
    ] = None,
    remote: Remote = None,
    remote_tags: RemoteTags = None,
    token_env: TokenEnv = None,
    token_file: TokenFile = None,
    header: Header = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = False,
    timeout: Timeout = None,
    deadline: Deadline = None,
    concurrency: Concurrency = None,
    post_to_base: PostToBase = False,
) -> None:
    """Classify images with the local model pack (or an Orthovision IG service, --remote) and
    print modality, view, body part and orientation with their confidence and source."""
    opts = dict(locals())
    from ..batch.walk import find_inputs
    from ..inputs.formats import sniff
    from ..inputs.source import SourceImage
    from ..labels.local import DEFAULT_MIN_CONFIDENCE, load_pack, needs_review

    if fmt not in FORMATS:
        typer.echo(f"error: --format must be one of {', '.join(FORMATS)}", err=True)
        raise typer.Exit(ExitCode.USAGE)
    threshold = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
    if not 0.0 <= threshold <= 1.0:
        typer.echo("error: --min-confidence must be within [0, 1]", err=True)
        raise typer.Exit(ExitCode.USAGE)
    try:
        clf = load_pack(models)
        found = find_inputs(inputs, include or (), exclude or ())
        service = None
        url = ""
        if remote:
            from ..remote import build_remote_source
            from ..remote.multi import parse_remote

            if len(remote) > 1 or parse_remote(remote[0])[1]:
                raise UsageError("classify takes one --remote URL (convert fuses several)")
            url = remote[0]
            service = build_remote_source(url, **remote_options(opts))
    except (ModelPackError, UsageError) as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    images = []
    rows: list[dict[str, Any]] = []
    for f in found:
        kind = sniff(f.path) if not f.problem else "unknown"
        if kind in ("jpeg", "tiff", "png", "jpeg2000", "bmp"):
            images.append(SourceImage(f.path, rel=f.rel, format=kind))
    if not images:
        typer.echo("error: no image found", err=True)
        raise typer.Exit(ExitCode.NOTHING_FOUND)
    failed = 0
    for img, labels, error in _classified(images, clf, service, bool(remote_tags)):
        failed += error is not None
        rows.append(
            {
                "path": str(img.path),
                "labels": labels.as_dict(),
                "review": needs_review(labels, threshold) if error is None else [],
                "error": error,
            }
        )
    source = f"remote {url}" if remote else clf.pack.name
    if fmt == "json":
        json.dump(
            {"pack": source, "min_confidence": threshold, "images": rows},
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    elif fmt == "csv":
        _write_csv(rows)
    else:
        _print_table(rows, source)
    if failed:
        raise typer.Exit(ExitCode.SOME_FAILED if failed < len(rows) else ExitCode.FATAL)


def _classified(
    images: list[Any], clf: Any, service: Any, mixed: bool
) -> Iterator[tuple[Any, Labels, str | None]]:
    """(image, labels, error) per image: the local pack in batches, or the remote service with
    many images in flight (and the local pack for the tags not asked of it)."""
    from ..errors import InputError
    from ..labels.fuse import fuse

    if service is None:
        for i in range(0, len(images), BATCH):
            chunk = images[i : i + BATCH]
            for img, labels in zip(chunk, clf.classify_many(chunk), strict=True):
                error = next((lab.detail["error"] for lab in labels if "error" in lab.detail), None)
                yield img, labels, error
        return
    answers = {id(img): got for img, got in service.classify_many(images)}
    for img in images:
        got = answers[id(img)]
        if isinstance(got, InputError):
            yield img, Labels(), got.one_line()
        elif mixed:
            yield img, fuse([got, clf.classify(img)]), None
        else:
            yield img, got, None


def _cell(lab: dict[str, Any] | None) -> tuple[str, str, str]:
    if lab is None or lab.get("value") is None:
        return "", f"{lab['confidence']:.2f}" if lab else "", lab.get("source", "") if lab else ""
    return str(lab["value"]), f"{lab['confidence']:.2f}", str(lab.get("source", ""))


def _write_csv(rows: list[dict[str, Any]]) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    header = ["path"]
    for t in TAG_COLUMNS:
        header += [t, f"{t}_confidence", f"{t}_source"]
    w.writerow([*header, "review", "error"])
    for r in rows:
        line = [r["path"]]
        for t in TAG_COLUMNS:
            line += list(_cell(r["labels"].get(t)))
        w.writerow([*line, " ".join(r["review"]), r["error"] or ""])


def _print_table(rows: list[dict[str, Any]], pack: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"orthovision classify (pack: {pack})")
    table.add_column("file", overflow="fold")
    for t in TAG_COLUMNS:
        table.add_column(t)
    table.add_column("review")
    for r in rows:
        cells = []
        for t in TAG_COLUMNS:
            value, conf, _src = _cell(r["labels"].get(t))
            cells.append(f"{value or '?'} ({conf})" if conf else "?")
        review = r["error"] or ", ".join(r["review"])
        table.add_row(Path(r["path"]).name, *cells, review)
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
