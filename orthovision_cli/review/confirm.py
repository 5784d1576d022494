"""`convert --confirm`: a person at the terminal confirms each file's labels before it is
written (use case 2a, a film-scanning station; works over SSH: plain line input, no mouse).

Per file: the subject ID, acquisition date and age when nothing else (options, manifest, path
template) gives them, each defaulting to the previous answer; then the proposed labels with
their confidence and source. Enter accepts; `m`, `p`, `b` or `o` edits a tag; `s` leaves the
file for review; `q` stops asking (the rest go on as `convert` without `--confirm`). What the
person confirms is written with source `person` and kept in `OUT/orthovision-decisions.csv`
like a decision on the review page.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.prompt import Prompt
from rich.table import Table

from ..batch.runner import Analysed
from ..decisions import PERSON, Decision, DecisionBook, clean
from ..errors import UsageError
from ..labels.model import TAGS, Label, Labels, Tag
from ..manifest import clean_patient, user_label
from .server import _user

KEYS: dict[str, Tag] = {"m": "modality", "p": "protocol", "b": "body_part", "o": "orientation"}
# Asked when nothing else gives them: (PatientInfo field, prompt).
PATIENT_FIELDS = (
    ("patient_id", "Subject ID"),
    ("study_date", "Acquisition date (YYYY-MM-DD)"),
    ("age", "Age (e.g. 12, 12Y, 8M)"),
)


class TerminalConfirm:
    def __init__(self, book: DecisionBook, who: str, console: Console | None = None):
        self.book = book
        self.who = who
        self.console = console or Console(highlight=False)
        self.previous: dict[str, str] = {}
        self.stopped = False
        self.count = 0

    def __call__(self, a: Analysed) -> Analysed:
        item = a.plan_input or a.review_input
        if self.stopped or item is None:
            return a
        self.count += 1
        c = self.console
        c.rule(f"[bold]{self.count}: {a.rel}")
        if a.error is not None:
            c.print(f"[yellow]{a.error.message}[/]")
        patient = item.patient
        answers: dict[str, str] = {}
        for field, prompt in PATIENT_FIELDS:
            if getattr(patient, field):
                continue
            while True:
                value = Prompt.ask(prompt, default=self.previous.get(field, ""), console=c).strip()
                try:
                    clean_patient({field: value})
                except UsageError as exc:
                    c.print(f"[red]{exc.message}[/]")
                    continue
                break
            answers[field] = self.previous[field] = value
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
        if answers:
            patient = patient.merged(clean_patient(answers))  # only empty fields were asked
        decision = clean(
            Decision(
                a.found_path,
                item.content_hash,
                **{t: person.value(t) or "" for t in TAGS},
                decided_by=self.who,
                decided_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
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
            meaning = f" {lab.meaning}" if lab is not None and lab.meaning else ""
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
            value = Prompt.ask(f"{tag} (empty: unknown)", default=current, console=self.console).strip()
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


def terminal_confirm(output: Any, who: str | None = None) -> TerminalConfirm:
    if not sys.stdin.isatty():
        raise UsageError("--confirm needs a terminal (it asks a person for each file)")
    return TerminalConfirm(DecisionBook(output), who or _user())
