"""`orthovision classify`: labels for images as a table, CSV or JSON, without converting."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from ..batch.walk import FoundInput, find_inputs
from ..config import ConvertSettings, RemoteSettings
from ..defaults import DEFAULT_MIN_CONFIDENCE
from ..display import shown
from ..errors import ExitCode, ModelPackError, UsageError, exit_code_for
from ..inputs.formats import IMAGE_SUFFIXES
from ..labels.facts import parse_radiographs
from ..labels.policy import uncertain_tags
from ..manifest import UserInput
from ..remote.multi import parse_remote
from ..vocab.tags import TAGS
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
    remote_settings,
)

FORMATS = ("table", "csv", "json")
TAG_COLUMNS = TAGS


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
    radiographs: Annotated[
        str | None,
        typer.Option(
            "--radiographs",
            help="film or digital: how the radiographs were acquired (RG or DX), as convert --radiographs.",
        ),
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
    if fmt not in FORMATS:
        typer.echo(f"error: --format must be one of {', '.join(FORMATS)}", err=True)
        raise typer.Exit(ExitCode.USAGE)
    threshold = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
    if not 0.0 <= threshold <= 1.0:
        typer.echo("error: --min-confidence must be within [0, 1]", err=True)
        raise typer.Exit(ExitCode.USAGE)
    try:
        for spec in remote or ():
            parse_remote(spec)  # a malformed TAG=URL is a usage error, as in convert
        settings = ConvertSettings(
            inputs=list(inputs),
            models=models,
            include=list(include or ()),
            exclude=list(exclude or ()),
            min_confidence=threshold,
            jobs=1,
            # Several services are fused per tag, exactly as convert fuses them.
            remote=(remote[0] if len(remote) == 1 else list(remote)) if remote else None,
            remote_options=remote_settings(opts) if remote else RemoteSettings(),
            radiographs=parse_radiographs(radiographs) if radiographs is not None else None,
        )
        found = find_inputs(inputs, include or (), exclude or ())
        rows, source = _classify(settings, found)
    except (ModelPackError, UsageError) as exc:
        typer.echo(f"error: {shown(exc.one_line())}", err=True)
        raise typer.Exit(exit_code_for(exc)) from None
    if not rows:
        typer.echo("error: no image found", err=True)
        raise typer.Exit(ExitCode.NOTHING_FOUND)
    failed = sum(r["error"] is not None for r in rows)
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


def _classify(settings: ConvertSettings, found: Sequence[FoundInput]) -> tuple[list[dict[str, Any]], str]:
    """Rows of the images found, labelled by `convert`'s own analysis (the same classifiers,
    EXIF and fusion), in the order found; and the name of what classified them. A remote
    service gets many images in flight; files that are not images of a supported format are
    left out."""
    # The analysis loads numpy, Pillow and the readers: only when this command runs.
    from ..batch.analyse import classify_input
    from ..batch.pool import label_sources, make_executor, pmap
    from ..labels.local import LocalClassifier

    user = UserInput({}, {}, options_radiographs=settings.radiographs or "")
    sources = label_sources(settings)  # fail fast on a broken pack or bad remote options
    pool = make_executor(settings, user, len(found), io_bound=bool(settings.remote))
    try:
        done = {c.path: c for c in pmap(pool, classify_input, found)}
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    rows: list[dict[str, Any]] = []
    for f in found:
        c = done[f.path_str]
        if c.unsupported and Path(c.path).suffix.lower() not in IMAGE_SUFFIXES:
            continue  # notes and spreadsheets beside the images; a broken .jpg is reported
        rows.append(
            {
                "path": c.path,
                "labels": c.labels.as_dict(),
                "review": uncertain_tags(c.labels, settings.min_confidence) if c.error is None else [],
                "error": c.error,
            }
        )
    pack = next((s for s in sources if isinstance(s, LocalClassifier)), None)
    remotes = [settings.remote] if isinstance(settings.remote, str) else list(settings.remote or ())
    source = f"remote {', '.join(remotes)}" if remotes else (pack.pack.name if pack else "none")
    return rows, source


def _cell(lab: dict[str, Any] | None) -> tuple[str, str, str]:
    if lab is None or lab.get("value") is None:
        return "", f"{lab['confidence']:.2f}" if lab else "", lab.get("source", "") if lab else ""
    return str(lab["value"]), f"{lab['confidence']:.2f}", str(lab.get("source", ""))


def _write_csv(rows: list[dict[str, Any]]) -> None:
    if isinstance(sys.stdout, io.TextIOWrapper):  # a name that is not UTF-8: its exact bytes
        sys.stdout.reconfigure(errors="surrogateescape")
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


# Short headers: the columns are as wide as their values (the view code, "turn 90").
_HEADERS = {"protocol": "view", "body_part": "body part", "orientation": "turn"}


def _print_table(rows: list[dict[str, Any]], pack: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Compact: value and confidence never wrap, so at 80 columns the file name keeps the rest
    # of the line (a name is folded only when it cannot fit at all).
    table = Table(
        title=f"orthovision classify (pack: {escape(pack)})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("file", overflow="fold", ratio=1)
    for t in TAG_COLUMNS:
        table.add_column(_HEADERS.get(t, t), no_wrap=True)
    table.add_column("review", overflow="fold")
    for r in rows:
        cells = []
        for t in TAG_COLUMNS:
            value, conf, _src = _cell(r["labels"].get(t))
            cells.append(f"{value or '?'} {conf}" if conf else "?")
        review = escape(shown(r["error"] or ", ".join(r["review"])))
        table.add_row(escape(shown(Path(r["path"]).name)), *cells, review)
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
