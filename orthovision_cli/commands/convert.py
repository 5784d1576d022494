"""`orthovision convert`: JPEG/TIFF/PNG files and folders to DICOM.

Over 400 lines: nearly all of it the declarations of the command's options (one per concern,
shown in the help's panels); the work is in `batch/`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import ConvertSettings, load_toml
from ..defaults import DEFAULT_ASSOCIATIONS, DEFAULT_NAME_TEMPLATE
from ..dicom.plan import PATIENT_FIELDS
from ..errors import OrthovisionError, OutputError, UsageError, exit_code_for
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
from .render import Reporter
from .send import sending

PATIENT_OPTS = PATIENT_FIELDS
LABEL_OPTS = TAGS


def convert(
    inputs: Annotated[
        list[Path] | None, typer.Argument(help="Files and folders to convert (recursive).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Output folder (holds the state and the report).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file with any of these options.")
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Glob of files to take (repeatable), e.g. '*.jpg' or 'ceph/**'."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Glob of files to leave out (repeatable).")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("-j", "--jobs", help="Worker processes (default: the number of cores).")
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run the work on a Dask cluster: tcp://scheduler:8786 (or tls://), or local:N to start N local worker processes. Needs the [cluster] extra; see docs/cluster.md.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Convert again even what is unchanged.")] = False,
    uid_secret: Annotated[
        Path | None,
        typer.Option(
            "--uid-secret",
            help="The key UIDs are derived from (created if missing, mode 0600): output folders "
            "converted with the same file give the same image the same UIDs (docs/dicom.md).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and report, write no DICOM.")] = False,
    name_template: Annotated[
        str | None,
        typer.Option(
            "--name-template",
            help="Output path template (placeholders: docs/batch.md). Default, spaces added for "
            "reading: " + DEFAULT_NAME_TEMPLATE.replace("/", "/ "),
        ),
    ] = None,
    on_collision: Annotated[
        str | None,
        typer.Option(
            "--on-collision", help="When a different file holds the name: suffix (default), skip, overwrite."
        ),
    ] = None,
    max_pixels: Annotated[
        int | None,
        typer.Option(
            "--max-pixels", help="Refuse frames larger than this many pixels (decompression-bomb guard)."
        ),
    ] = None,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            help="Memory the images in flight may use together, e.g. 4G (default: half of what is available).",
        ),
    ] = None,
    zip_max_size: Annotated[
        str | None,
        typer.Option(
            "--zip-max-size",
            help="Refuse a zip whose image members add up to more than this, e.g. 32G (default 16G).",
        ),
    ] = None,
    zip_max_members: Annotated[
        int | None,
        typer.Option("--zip-max-members", help="Refuse a zip of more entries than this (default 100000)."),
    ] = None,
    zip_max_ratio: Annotated[
        int | None,
        typer.Option(
            "--zip-max-ratio",
            help="Refuse a zip member (1 MiB or more) that expands more than this many times (default 200).",
        ),
    ] = None,
    no_fsync: Annotated[
        bool, typer.Option("--no-fsync", help="Skip fsync after each file (faster; unsafe on power loss).")
    ] = False,
    models: Annotated[
        Path | None, typer.Option("--models", help="Model pack folder (default: the embedded pack).")
    ] = None,
    no_models: Annotated[
        bool,
        typer.Option(
            "--no-models", help="Use no classifier: labels come only from options, manifest and EXIF."
        ),
    ] = False,
    min_confidence: Annotated[
        float | None,
        typer.Option("--min-confidence", help="Labels below this confidence are uncertain (default 0.8)."),
    ] = None,
    on_uncertain: Annotated[
        str | None,
        typer.Option(
            "--on-uncertain",
            help="review (default): list for a person, don't convert; convert: convert, leaving uncertain labels unknown; skip.",
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
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest", help="CSV: a row per file or folder with patient data and label overrides."
        ),
    ] = None,
    manifest_strict: Annotated[
        bool,
        typer.Option(
            "--manifest-strict",
            help="A manifest row that matches no input is an error (exit 2), not a warning.",
        ),
    ] = False,
    path_template: Annotated[
        str | None,
        typer.Option(
            "--path-template", help="Read fields from input paths, e.g. '{PatientID}/{StudyDate}/*'."
        ),
    ] = None,
    patient_id: Annotated[
        str | None,
        typer.Option("--patient-id", help="Patient ID for every input (a manifest sets it per file)"),
    ] = None,
    patient_name: Annotated[str | None, typer.Option("--patient-name", help="Family^Given")] = None,
    birth_date: Annotated[str | None, typer.Option("--birth-date", help="YYYY-MM-DD")] = None,
    sex: Annotated[str | None, typer.Option("--sex", help="M, F or O")] = None,
    study_date: Annotated[str | None, typer.Option("--study-date", help="YYYY-MM-DD")] = None,
    accession: Annotated[
        str | None, typer.Option("--accession", help="Accession Number of the study (from the RIS order)")
    ] = None,
    study_description: Annotated[
        str | None, typer.Option("--study-description", help="Study Description, e.g. 'Ortho records'")
    ] = None,
    referring_physician: Annotated[
        str | None, typer.Option("--referring-physician", help="Referring Physician's Name, Family^Given")
    ] = None,
    institution: Annotated[str | None, typer.Option("--institution", help="Institution Name")] = None,
    operator: Annotated[
        str | None,
        typer.Option("--operator", help="Operators' Name: who took or scanned the images, Family^Given"),
    ] = None,
    physician_of_record: Annotated[
        str | None,
        typer.Option(
            "--physician-of-record", help="Physician(s) of Record: the treating orthodontist, Family^Given"
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            help="Offset from UTC of the dates and times written, e.g. +0100 (default: the camera's)",
        ),
    ] = None,
    timepoint: Annotated[
        str | None,
        typer.Option(
            "--timepoint",
            help="The visit's place in treatment: pre-treatment, initial, progress, final or post-treatment (Study Description, and Acquisition Context of photographs)",
        ),
    ] = None,
    treatment_start: Annotated[
        str | None,
        typer.Option(
            "--treatment-start",
            help="YYYY-MM-DD treatment started: a progress visit's days since it are written",
        ),
    ] = None,
    laterality: Annotated[str | None, typer.Option("--laterality", help="R or L (paired body parts)")] = None,
    modality: Annotated[
        str | None, typer.Option("--modality", help="XC, PX, DX, CR, IO, ... for every input")
    ] = None,
    protocol: Annotated[
        str | None, typer.Option("--protocol", help="ADA-1100 view (EV01 ...) or radiograph protocol")
    ] = None,
    body_part: Annotated[
        str | None, typer.Option("--body-part", help="Body Part Examined (HEAD, JAW, CHEST, ...)")
    ] = None,
    orientation: Annotated[
        str | None, typer.Option("--orientation", help="Correction to apply: 90, 180, 270, +flip")
    ] = None,
    visit_gap: Annotated[
        int | None,
        typer.Option(
            "--visit-gap",
            help="Minutes without a photograph (or another camera) that end a visit: each visit of a folder is a study of its own; 0 turns it off (default: 10)",
        ),
    ] = None,
    records: Annotated[
        Path | None,
        typer.Option(
            "--records",
            help="A protocol TOML file: the views a visit should have, or `progress` (default: the usual orthodontic records set; a progress visit's own set where --timepoint says progress). The report lists per visit what is present, missing and duplicated.",
        ),
    ] = None,
    require_complete: Annotated[
        bool,
        typer.Option(
            "--require-complete", help="A visit with a view of --records missing makes exit code 4."
        ),
    ] = False,
    radiographs: Annotated[
        str | None,
        typer.Option(
            "--radiographs",
            help="film or digital: how the radiographs of this batch were acquired (scanned films: RG, digital: DX); photographs, panoramic and intraoral kinds keep theirs. Unlike --modality, it only answers film or digital.",
        ),
    ] = None,
    send: Annotated[
        list[str] | None,
        typer.Option(
            "--send",
            help="Also send each instance, once durable, to this destination (repeatable): dicom://AE@host:port or http(s)://…/dicom-web. See `orthovision send`.",
        ),
    ] = None,
    calling_ae: Annotated[
        str, typer.Option("--calling-ae", help="With --send: our AE title.")
    ] = "ORTHOVISION",
    send_associations: Annotated[
        int,
        typer.Option(
            "--send-associations", help="With --send: associations/requests in parallel per destination."
        ),
    ] = DEFAULT_ASSOCIATIONS,
    send_token_env: Annotated[
        str | None,
        typer.Option(
            "--send-token-env", help="With --send: environment variable holding the STOW-RS bearer token."
        ),
    ] = None,
    send_token_file: Annotated[
        Path | None,
        typer.Option("--send-token-file", help="With --send: file holding the STOW-RS bearer token."),
    ] = None,
    send_basic_auth_env: Annotated[
        str | None,
        typer.Option(
            "--send-basic-auth-env", help="With --send: environment variable holding user:password."
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Print only errors and the exit status.")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="A line per file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON on stdout.")] = False,
    confirm: Annotated[
        bool,
        typer.Option(
            "--confirm",
            help="Ask at the terminal, per file, to confirm or edit its labels (and subject ID, date, age when missing: once per visit for photographs).",
        ),
    ] = False,
) -> None:
    """Convert JPEG, TIFF, PNG and JPEG 2000 images (also inside zip archives) to DICOM."""
    reporter = Reporter(quiet=quiet or as_json, verbose=verbose)
    try:
        settings = _settings(locals())
        reporter.dry_run = settings.dry_run
        from ..batch.runner import run_convert

        asker = None
        if confirm:
            from ..review.confirm import terminal_confirm

            asker = terminal_confirm(settings)
            reporter.interactive = False  # prompts, not a live progress bar
        with _no_trace_if_dry(settings), sending(settings.output, send, locals()) as feed:
            summary = run_convert(settings, feed.chain(reporter.event), argv=sys.argv[1:], confirm=asker)
        if not settings.dry_run:
            from ..review.apply import remember

            remember(settings)  # for `review OUT --apply`
    except OrthovisionError as exc:
        reporter.error(exc.message if isinstance(exc, UsageError | OutputError) else exc.one_line())
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt as exc:
        reporter.error("interrupted; the output is consistent, run the same command to continue")
        raise typer.Exit(exit_code_for(exc)) from None
    finally:
        reporter.close()
    code = feed.exit_code(summary.exit_code)
    if as_json:
        from ..batch.report import report_head

        report = {**report_head(summary), "exit_code": int(code)}
        report["dry_run"] = settings.dry_run
        report["files"] = [r.as_dict() for r in sorted(summary.results, key=lambda r: r.rel)]
        if feed.summary is not None:
            report["send"] = feed.summary.as_dict()
        typer.echo(json.dumps(report, indent=1))
    else:
        reporter.summary(summary)
        feed.print_summary()
    raise typer.Exit(int(code))


@contextlib.contextmanager
def _no_trace_if_dry(settings: ConvertSettings) -> Iterator[None]:
    """`--dry-run` on an output that has no state yet leaves only the UID secret behind: the
    run needs a state to plan, and the names and UIDs it shows are those a real run then
    writes only if the secret stays (docs/batch.md)."""
    output = settings.output
    if not settings.dry_run or output is None:
        yield
        return
    from ..batch.state import STATE_DIR

    state = output / STATE_DIR
    made_state = not state.exists()
    try:
        yield
    finally:
        if made_state and state.is_dir():
            for entry in state.iterdir():
                if entry.name == "uid-secret":
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def _settings(opts: dict[str, Any]) -> ConvertSettings:
    values: dict[str, Any] = {}
    if opts["config"] is not None:
        values.update(load_toml(opts["config"]))
    direct = (
        "output",
        "jobs",
        "cluster",
        "name_template",
        "on_collision",
        "max_pixels",
        "max_memory",
        "zip_max_size",
        "zip_max_members",
        "zip_max_ratio",
        "models",
        "min_confidence",
        "on_uncertain",
        "remote",
        "manifest",
        "path_template",
        "uid_secret",
        "radiographs",
        "visit_gap",
        "records",
    )
    for name in direct:
        if opts[name] is not None:
            values[name] = opts[name]
    if isinstance(values.get("remote"), list) and len(values["remote"]) == 1:
        values["remote"] = values["remote"][0]  # one service: the setting as before
    if opts["inputs"]:
        values["inputs"] = list(opts["inputs"])
    if opts["include"]:
        values["include"] = list(opts["include"])
    if opts["exclude"]:
        values["exclude"] = list(opts["exclude"])
    for flag in ("force", "dry_run", "manifest_strict", "require_complete"):
        if opts[flag]:
            values[flag] = True
    if opts["no_fsync"]:
        values["fsync"] = False
    if opts["no_models"]:
        values["use_models"] = False
    patient = dict(values.get("patient", {}))
    labels = dict(values.get("labels", {}))
    for name in PATIENT_OPTS:  # the fields without an option of their own (age) come from files
        if opts.get(name) is not None:
            patient[name] = opts[name]
    for name in LABEL_OPTS:
        if opts[name] is not None:
            labels[name] = opts[name]
    values["patient"], values["labels"] = patient, labels
    values["remote_options"] = remote_settings(opts, values.get("remote_options"))
    try:
        settings = ConvertSettings(**values)
    except TypeError as exc:
        raise UsageError(f"bad configuration: {exc}") from exc
    return settings


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
