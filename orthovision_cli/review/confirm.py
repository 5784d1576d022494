"""`convert --confirm`: a person at the terminal confirms each file's labels before it is
written (use case 2a, a film-scanning station; works over SSH: plain line input, no mouse).

Per file: the subject ID, acquisition date and age when nothing else (options, manifest, path
template) gives them, each defaulting to the previous answer; then the proposed labels with
their confidence and source. Enter accepts; `m`, `p`, `b` or `o` edits a tag; `s` leaves the
file for review; `q` stops asking (the rest go on as `convert` without `--confirm`). What the
person confirms (labels and the subject data typed) is written with source `person` and kept in
`OUT/orthovision-decisions.csv` like a decision on the review page; later runs apply it.

Asked once, not per file:
- film or digital: the first radiograph of a source folder (the folder given to `convert`) whose
  file does not tell asks "Are the radiographs in <folder> scanned films or digital?"; the
  answer settles every file below that folder, now and on later runs (`answers.py`,
  `OUT/orthovision-settings.toml`);
- after a decision, "same for the next N files of this folder?" (the file's own folder): the
  next files of that folder whose proposal is the same get the same labels and subject data
  without a question (up to the end of the visit, for photographs);
- the subject data once per visit (issue 26): a photograph taken within `--visit-gap` minutes of
  the previous one of its folder and camera is of the same visit and takes its answers; a new
  visit is asked afresh, with no previous patient offered as the default; a patient card starts
  a visit whose patient is the card's (its ID is not asked).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.prompt import Prompt
from rich.table import Table

from ..answers import Answer, AnswerBook, source_folder
from ..batch.runner import Analysed
from ..batch.walk import FoundInput
from ..config import ConvertSettings
from ..decisions import PERSON, Decision, DecisionBook, clean
from ..defaults import DEFAULT_MIN_CONFIDENCE, DEFAULT_VISIT_GAP
from ..dicom.plan import PlanInput
from ..errors import NeedsReview, UsageError
from ..labels.facts import MODALITY_OF, apply_radiographs, open_question
from ..labels.model import TAGS, Label, Labels, Tag
from ..labels.policy import apply_policy
from ..manifest import clean_patient, user_label
from ..types import OnUncertain
from ..vocab.terms import modality_code
from .confirm_visits import Visit, Visits, session_photo
from .server import _user

KEYS: dict[str, Tag] = {"m": "modality", "p": "protocol", "b": "body_part", "o": "orientation"}
# Asked when nothing else gives them: (PatientInfo field, prompt).
PATIENT_FIELDS = (
    ("patient_id", "Subject ID"),
    ("study_date", "Acquisition date (YYYY-MM-DD)"),
    ("age", "Age (e.g. 12, 12Y, 8M)"),
)
FILM_OR_DIGITAL = {"f": "film", "d": "digital"}


@dataclass
class _Same:
    """ "Same for the next N files of this folder": a decision repeated on look-alikes."""

    folder: str
    proposal: tuple[str, ...]  # what the tool proposed for the first file
    labels: Labels  # what the person decided
    answers: dict[str, str]  # the subject fields typed
    left: int


def _proposal(labels: Labels) -> tuple[str, ...]:
    return tuple(labels.value(t) or "" for t in TAGS)


class TerminalConfirm:
    def __init__(
        self,
        book: DecisionBook,
        who: str,
        console: Console | None = None,
        answers: AnswerBook | None = None,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        on_uncertain: OnUncertain | str = OnUncertain.REVIEW,
        visit_gap: int = DEFAULT_VISIT_GAP,
    ):
        self.book = book
        self.who = who
        self.console = console or Console(highlight=False)
        self.answers = answers if answers is not None else AnswerBook(book.output)
        self.min_confidence = min_confidence
        self.on_uncertain = on_uncertain
        self.previous: dict[str, str] = {}
        self.stopped = False
        self.count = 0
        self.pending: Counter[str] = Counter()  # folder -> its files not shown yet
        self.skipped_folders: set[str] = set()  # film or digital not answered: ask per run
        self.same: _Same | None = None
        self.visits = Visits(visit_gap)  # the subject data asked once per visit

    def begin(self, todo: list[FoundInput]) -> None:
        self.pending = Counter(str(f.path.parent) for f in todo)

    def __call__(self, a: Analysed) -> Analysed:
        item = a.plan_input or a.review_input
        folder = str(Path(a.found_path).parent)  # "the next N files of this folder"
        self.pending[folder] = max(0, self.pending[folder] - 1)  # a card or a failure too
        if item is None:
            if a.card is not None:
                self._card_visit(a, folder)
            return a
        a, item = self._batch_fact(a, item, source_folder(a.found_path, a.rel))
        if self.stopped:
            return a
        visit = self.visits.of(item, folder)
        if visit is not None and item.probe.exif.acquired is not None:
            visit.last = max(visit.last, item.probe.exif.acquired)
        same = self.same
        if same is not None and visit is None and self.visits.gap > 0 and session_photo(item):
            self.same = same = None  # a new visit: its patient is not the last one's
        if (
            same is not None
            and same.folder == folder
            and same.left > 0
            and _proposal(item.labels) == same.proposal
        ):
            return self._repeat(a, item, same)
        self.count += 1
        c = self.console
        c.rule(f"[bold]{self.count}: {a.rel}")
        if a.error is not None:
            c.print(f"[yellow]{a.error.message}[/]")
        answers = self._visit_subject(item, folder, visit)
        labels = item.labels
        while True:
            self._show(labels, a)
            key = (
                Prompt.ask(
                    "Enter accepts; m/p/b/o edits a tag; s leaves it for review; q stops asking",
                    default="",
                    show_default=False,
                    console=c,
                )
                .strip()
                .lower()
            )
            if key == "":
                break
            if key == "s":
                return a
            if key == "q":
                self.stopped = True
                return a
            if key in KEYS:
                labels = self._edit(labels, KEYS[key])
            else:
                c.print(f"[red]unknown key {key!r}[/]")
        person = self._as_person(labels)
        out = self._decide(a, item, person, answers)
        self._offer_same(folder, item, person, answers)
        return out

    # -- asked once: the subject data of a visit ---------------------------------------------

    def _card_visit(self, a: Analysed, folder: str) -> None:
        """A patient card: the visit after it is its patient's (cards.py gives it the patient)."""
        assert a.card is not None
        visit = self.visits.from_card(a.card, folder)
        if visit is not None:
            self.console.rule(f"[bold]patient card {a.rel}")
            self.console.print(f"the visit after it is {visit.card}'s: its ID is not asked")

    def _visit_subject(self, item: PlanInput, folder: str, visit: Visit | None) -> dict[str, str]:
        """The subject data: the visit's answers once it was asked, else asked now (a new visit
        offers no earlier patient's answers as defaults; the date is its capture time's; a
        card's visit is not asked the ID)."""
        if visit is None:
            visit = self.visits.new(item, folder)
            if visit is None:  # not a visit's photograph (a film, no capture time): per file
                return self._ask_subject(item)
        if not visit.asked:
            self.previous = {}
            # Its capture time is the visit's date; a card names its patient.
            skip = ("study_date", "patient_id") if visit.card else ("study_date",)
            visit.answers = self._ask_subject(item, skip)
            visit.asked = True
        else:
            said = {**visit.answers, **({"patient_id": visit.card} if visit.card else {})}
            shown = ", ".join(f"{q.split(' (')[0]} {said[f]}" for f, q in PATIENT_FIELDS if said.get(f))
            self.console.print(f"same visit, same subject data: {shown or 'none given'}")
        return {f: v for f, v in visit.answers.items() if not getattr(item.patient, f)}

    # -- asked once: film or digital for a source folder ------------------------------------

    def _batch_fact(self, a: Analysed, item: PlanInput, folder: str) -> tuple[Analysed, PlanInput]:
        """A radiograph whose film or digital nothing stated: the folder's answer (asked now,
        once, if nobody gave it yet), then the policy again with it."""
        if not open_question(item.labels):
            return a, item
        known = self.answers.radiographs_for(a.found_path)
        if known is None:
            if self.stopped or folder in self.skipped_folders:
                return a, item
            known = self._ask_film_or_digital(folder)
            if known is None:
                return a, item
        labels = apply_radiographs(item.labels, known.acquisition, PERSON)
        return self._reassess(a, item, labels)

    def _ask_film_or_digital(self, folder: str) -> Answer | None:
        c = self.console
        c.rule("[bold]once for a folder")
        c.print(f"Are the radiographs in {folder} scanned films or digital?", soft_wrap=True)
        while True:
            key = Prompt.ask("f: films (RG), d: digital (DX), s: ask per file", console=c).strip().lower()
            if key == "s":
                self.skipped_folders.add(folder)
                return None
            if key in FILM_OR_DIGITAL:
                break
            c.print(f"[red]unknown key {key!r}[/]")
        acquisition = FILM_OR_DIGITAL[key]
        answer = self.answers.save(Answer(folder, acquisition, self.who))
        c.print(
            f"[green]every radiograph in {folder} is {acquisition} ({MODALITY_OF[acquisition]}); "
            f"kept in {self.answers.path.name} for later runs[/]",
            soft_wrap=True,
        )
        return answer

    def _reassess(self, a: Analysed, item: PlanInput, labels: Labels) -> tuple[Analysed, PlanInput]:
        """The uncertainty policy again, on labels that a batch fact has settled."""
        new_item = replace(item, labels=labels)
        try:
            kept = apply_policy(labels, self.min_confidence, self.on_uncertain, Path(a.found_path))
        except NeedsReview as exc:
            error = a.error
            if error is not None:
                error = replace(error, message=" ".join(exc.message.split()), labels=labels.as_dict())
            return replace(a, error=error, plan_input=None, review_input=new_item), new_item
        new_item = replace(item, labels=kept)
        return Analysed(a.found_path, a.rel, a.size, a.mtime_ns, plan_input=new_item), new_item

    # -- "same for the next N files of this folder" -------------------------------------------

    def _offer_same(self, folder: str, item: PlanInput, person: Labels, answers: dict[str, str]) -> None:
        n = self.pending[folder]
        self.same = None
        if n <= 0:
            return
        self.console.print(
            f"Same for the next {n} file(s) of {folder} that look alike (the same proposal)?", soft_wrap=True
        )
        key = Prompt.ask(
            "y: yes, Enter: ask for each",
            default="n",
            show_default=False,
            console=self.console,
        )
        if key.strip().lower() in ("y", "yes"):
            self.same = _Same(folder, _proposal(item.labels), person, answers, n)

    def _repeat(self, a: Analysed, item: PlanInput, same: _Same) -> Analysed:
        same.left -= 1
        self.console.print(f"{a.rel}: same as before ({same.left} more at most)")
        answers = {f: v for f, v in same.answers.items() if not getattr(item.patient, f)}
        return self._decide(a, item, same.labels, answers)

    # -- one file -------------------------------------------------------------------------------

    def _ask_subject(self, item: PlanInput, skip: tuple[str, ...] = ()) -> dict[str, str]:
        answers: dict[str, str] = {}
        for field, prompt in PATIENT_FIELDS:
            if getattr(item.patient, field) or field in skip:
                continue
            while True:
                # An empty default is not shown as "()": the prompt says what empty means.
                previous = self.previous.get(field, "")
                text = f"{prompt} (Enter: {previous})" if previous else f"{prompt} (Enter: leave empty)"
                got = Prompt.ask(text, console=self.console, show_default=False, default=previous)
                value = (got or "").strip()
                try:
                    clean_patient({field: value})
                except UsageError as exc:
                    self.console.print(f"[red]{exc.message}[/]")
                    continue
                break
            answers[field] = self.previous[field] = value
        return answers

    def _decide(self, a: Analysed, item: PlanInput, person: Labels, answers: dict[str, str]) -> Analysed:
        """Keep the person's labels and subject data (decisions file) and plan the file."""
        patient = item.patient
        subject = clean_patient(answers)  # only empty fields were asked
        if answers:
            patient = patient.merged(subject)
        decision = clean(
            Decision(
                a.found_path,
                item.content_hash,
                **{t: person.value(t) or "" for t in TAGS},
                decided_by=self.who,
                decided_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                **{f: getattr(subject, f) for f in answers},
            )
        )
        self.book.save([decision])
        return Analysed(
            a.found_path, a.rel, a.size, a.mtime_ns, plan_input=replace(item, labels=person, patient=patient)
        )

    def _show(self, labels: Labels, a: Analysed) -> None:
        table = Table(show_edge=False, box=None, pad_edge=False)
        for col in ("key", "tag", "value", "confidence", "source"):
            table.add_column(col)
        uncertain = a.error.message if a.error is not None else ""
        for key, tag in KEYS.items():
            lab = labels.get(tag)
            value = lab.value if lab is not None and lab.known else "(unknown)"
            meaning = f" {lab.meaning}" if lab is not None and lab.meaning else _meaning(tag, value)
            style = "bold red" if f"{tag}=" in uncertain else ""
            table.add_row(
                key,
                tag,
                f"[{style}]{value}{meaning}[/]" if style else f"{value}{meaning}",
                f"{lab.confidence:.2f}" if lab is not None else "",
                lab.source if lab is not None else "",
            )
        self.console.print(table)

    def _edit(self, labels: Labels, tag: Tag) -> Labels:
        current = labels.value(tag) or ""
        while True:
            hint = " (e.g. XC, PX, DX, RG, IO, CR)" if tag == "modality" else ""
            value = Prompt.ask(f"{tag}{hint} (empty: unknown)", default=current, console=self.console).strip()
            if not value:
                return labels.with_label(Label(tag, None, 1.0, PERSON))
            try:
                return labels.with_label(user_label(tag, value, PERSON))
            except UsageError as exc:
                self.console.print(f"[red]{exc.message}[/]")

    @staticmethod
    def _as_person(labels: Labels) -> Labels:
        out = Labels()
        for tag in TAGS:
            value = labels.value(tag)
            out = out.with_label(user_label(tag, value, PERSON) if value else Label(tag, None, 1.0, PERSON))
        return out


def _meaning(tag: str, value: str | None) -> str:
    """A modality's meaning where the label carries none (RG from a batch answer)."""
    if tag != "modality" or not value or value == "(unknown)":
        return ""
    try:
        return f" {modality_code(value).meaning}"
    except KeyError:
        return ""


def terminal_confirm(settings: ConvertSettings, who: str | None = None) -> TerminalConfirm:
    if not sys.stdin.isatty():
        raise UsageError("--confirm needs a terminal (it asks a person for each file)")
    assert settings.output is not None
    return TerminalConfirm(
        DecisionBook(settings.output),
        who or _user(),
        answers=AnswerBook(settings.output),
        min_confidence=settings.min_confidence,
        on_uncertain=settings.on_uncertain,
        visit_gap=settings.visit_gap,
    )
