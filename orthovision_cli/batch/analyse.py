"""The analyse stage, in a worker: probe an input, label it (what the user said, a person's
decision, EXIF, the classifiers), apply the uncertainty policy, and hand a `PlanInput` on.

`label_input` is the whole labelling, shared by `convert` (through `analyse`) and `classify`
(through `classify_input`), so both give the same labels for the same file and options.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from ..dicom.plan import PatientInfo, PlanInput, check_frame_limits
from ..errors import (
    AlreadyDicom,
    InputError,
    NeedsReview,
    OrthovisionError,
    OutputError,
    UnreadableInput,
    UnsupportedFormat,
)
from ..inputs.cards import CARD_PREVIEW_SIDE, read_codes
from ..inputs.formats import IMAGE_SUFFIXES
from ..inputs.reader import kept_probe, probe
from ..inputs.source import SourceImage, hash_mapped, mapped
from ..labels.facts import apply_radiographs
from ..labels.fuse import fuse
from ..labels.model import TAGS, Label, Labels, LabelSource
from ..labels.policy import apply_policy
from ..labels.vet import vet_labels
from ..manifest import clean_patient
from ..types import FileStatus, Orientation, Probe
from . import capture, cards
from .pool import context
from .results import Analysed, Classified, FileResult
from .walk import FoundInput


@dataclass
class Labelled:
    """One input probed and labelled, before the uncertainty policy."""

    st: os.stat_result
    digest: str
    probe: Probe
    patient: PatientInfo
    labels: Labels
    decided: bool  # a person's decision from the review page


def exif_labels(pr: Probe) -> Labels:
    if pr.exif.orientation == 1:
        return Labels()
    o = Orientation.from_exif(pr.exif.orientation)
    return Labels(
        orientation=Label(
            "orientation", str(o), 1.0, "exif", detail={"exif_orientation": pr.exif.orientation}
        )
    )


def classify_image(image: SourceImage, pr: Probe, given: Labels, sources: list[LabelSource]) -> Labels:
    """Fuse what was given, EXIF and the classifiers (asked only for what nobody said)."""
    candidates = [given, exif_labels(pr)]
    for src in sources:
        if all(given.get(t) is not None for t in TAGS):
            break
        candidates.append(src.classify(image))
    return fuse(candidates)


def label_input(found: FoundInput) -> Labelled:
    """Probe and label one input, every value checked against the vocabulary (`vet_labels`);
    raises InputError for this input only."""
    got = _label_input(found)
    return replace(got, labels=vet_labels(got.labels, found.path))


def _label_input(found: FoundInput) -> Labelled:
    """Probe and label one input; raises InputError for this input only."""
    ctx = context()
    path = found.path
    if found.problem:
        raise UnreadableInput(found.problem, path=path, reason=found.reason or None)
    try:
        st = path.stat()
    except OSError as exc:
        raise UnreadableInput(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    if not os.access(path, os.R_OK):
        raise UnreadableInput("permission denied", path=path, reason="permission-denied")
    with mapped(path) as (mm, _):  # one open and one map: hash and probe read it once
        digest = hash_mapped(mm)
        pr = probe(path, ctx.settings.max_pixels, data=mm)
    check_frame_limits(pr)  # what DICOM cannot hold fails now, before any pixel is read
    patient, given = ctx.user.for_file(found.rel, path.absolute())
    decision = ctx.decisions.current(str(path), digest) if ctx.decisions else None
    if decision is not None and decision.subject():
        # Typed at --confirm: fills what options, manifest and path template leave empty.
        patient = clean_patient(decision.subject()).merged(patient)
    if decision is not None and decision.complete:  # a person decided all four tags
        return Labelled(st, digest, pr, patient, decision.labels(), True)
    image = SourceImage(path, found.rel, pr.format, probed=True)
    labels = classify_image(image, pr, given, ctx.sources)
    fact = ctx.user.radiographs_for(found.rel, path.absolute())
    if fact is not None:  # film or digital, said once for the batch: a fact, not a guess
        labels = apply_radiographs(labels, *fact)
    if decision is None:
        return Labelled(st, digest, pr, patient, labels, False)
    # Some tags decided: those are the person's (an unknown chosen stays unknown, whatever a
    # classifier says); the others stay the classifiers', under the policy.
    for lab in decision.labels():
        labels = labels.with_label(lab)
    return Labelled(st, digest, pr, patient, labels, True)


def analyse(found: FoundInput) -> Analysed:
    """The convert stage: labels under the policy, as a PlanInput (or the reason it is not);
    what the libraries said about the file goes with it (`capture`)."""
    with capture.messages() as notes:
        a = _analyse(found)
    a.warnings = notes
    if a.error is not None:
        a.error.warnings = list(notes)
    return a


def _analyse(found: FoundInput) -> Analysed:
    settings = context().settings
    start = time.perf_counter()
    path = found.path
    try:
        got = label_input(found)
        size, mtime_ns = got.st.st_size, got.st.st_mtime_ns
        labels = got.labels
        card = _patient_card(found, got)
        if card is not None:
            why = f"a patient card ({card.patient.patient_id or card.patient.patient_name}): not converted"
            ignored = FileResult(str(path), found.rel, FileStatus.IGNORED, cards.REASON, why)
            ignored.content_hash = got.digest
            return Analysed(str(path), found.rel, size, mtime_ns, error=ignored, card=card)
        try:
            labels = apply_policy(labels, settings.min_confidence, settings.on_uncertain, path)
        except NeedsReview as exc:  # the review page shows what was proposed
            res = failure(found, exc, start)
            res.labels, res.content_hash = labels.as_dict(), got.digest
            held = PlanInput(got.digest, found.rel, kept_probe(got.probe), labels, got.patient, got.digest)
            return Analysed(str(path), found.rel, size, mtime_ns, error=res, review_input=held)
        # Kept by the coordinator until written (issue 25: memory per input of a large batch).
        item = PlanInput(got.digest, found.rel, kept_probe(got.probe), labels, got.patient, got.digest)
        return Analysed(str(path), found.rel, size, mtime_ns, plan_input=item)
    except UnsupportedFormat as exc:
        if is_not_an_image(path, exc) or isinstance(exc, AlreadyDicom):
            # A README or spreadsheet beside the images, or a DICOM file: not a failure.
            why = exc.reason if isinstance(exc, AlreadyDicom) else "not-an-image"
            ignored = FileResult(str(path), found.rel, FileStatus.IGNORED, why, exc.message)
            return Analysed(str(path), found.rel, 0, 0, error=ignored)
        return Analysed(str(path), found.rel, 0, 0, error=failure(found, exc, start))
    except InputError as exc:
        return Analysed(str(path), found.rel, 0, 0, error=failure(found, exc, start))
    except OutputError:
        raise
    except MemoryError:
        err = InputError("not enough memory to analyse", path=path, reason="image-too-large")
        return Analysed(str(path), found.rel, 0, 0, error=failure(found, err, start))
    except Exception as exc:  # a bug or a library's surprise: one file fails, the batch goes on
        err = InputError(one_line(exc), path=path, reason="internal-error")
        return Analysed(str(path), found.rel, 0, 0, error=failure(found, err, start))


def _patient_card(found: FoundInput, got: Labelled) -> cards.Card | None:
    """The card a photograph shows, if it is one: asked only of colour pictures that nothing
    placed (no view, not said to be anything but a photograph), on a 1000-pixel preview."""
    modality = got.labels.value("modality")
    if got.decided or got.labels.value("protocol") or modality not in (None, "XC"):
        return None
    if got.probe.first.samples < 3 or got.probe.exif.acquired is None:
        return None  # a card names the visit after it: without a capture time, none
    image = SourceImage(found.path, found.rel, got.probe.format, probed=True)
    codes = read_codes(image.preview(CARD_PREVIEW_SIDE))
    if not codes:
        return None
    try:
        patient = cards.card_payload(codes[0])
    except cards.NotACard:
        return None
    xc = got.labels.with_label(Label("modality", "XC", 1.0, "patient-card"))
    return cards.Card(PlanInput(got.digest, found.rel, got.probe, xc, got.patient, got.digest), patient)


def classify_input(found: FoundInput) -> Classified:
    """The classify stage: the same labelling as `analyse`, without the policy (what the
    libraries print is kept off the terminal)."""
    with capture.messages():
        return _classify_input(found)


def _classify_input(found: FoundInput) -> Classified:
    path = found.path
    try:
        return Classified(str(path), found.rel, label_input(found).labels)
    except UnsupportedFormat as exc:
        return Classified(str(path), found.rel, Labels(), exc.one_line(), unsupported=True)
    except InputError as exc:
        return Classified(str(path), found.rel, Labels(), exc.one_line())
    except Exception as exc:  # a bug or a library's surprise: one file fails, the others go on
        return Classified(str(path), found.rel, Labels(), f"internal-error: {one_line(exc)}")


def one_line(exc: BaseException) -> str:
    """An unexpected exception as one line for the report (the traceback only with --debug)."""
    text = " ".join(str(exc).split())
    msg = f"unexpected {type(exc).__name__}: {text[:300]}"
    if os.environ.get("ORTHOVISION_DEBUG"):
        msg += " | " + " | ".join(line.strip() for line in traceback.format_exception(exc) if line.strip())
    return msg


def is_not_an_image(path: Path, exc: UnsupportedFormat) -> bool:
    return path.suffix.lower() not in IMAGE_SUFFIXES and exc.reason == "unsupported-format"


def failure(found: FoundInput, exc: OrthovisionError, start: float) -> FileResult:
    status = FileStatus.FAILED
    if isinstance(exc, NeedsReview):
        status = FileStatus.REVIEW if exc.reason == "needs-review" else FileStatus.SKIPPED
    return FileResult(
        found.path_str,
        found.rel,
        status,
        exc.reason,
        " ".join(exc.message.split()),
        seconds=time.perf_counter() - start,
    )
