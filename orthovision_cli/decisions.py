"""`OUT/orthovision-decisions.csv`: what a person decided for files awaiting review.

One row per input: its absolute path, the sha256 of the content the person saw, the four
labels, who decided when, and `decided_tags`: the tags the person set or confirmed. Only those
are the person's; the others stay the classifiers' (under the uncertainty policy), so a bulk
"Set" of one tag decides that tag alone (issue 21). A decided tag with an empty cell is one the
person left unknown on purpose. A file written before that column existed decided all four.
The subject data typed at `convert --confirm` (subject ID, acquisition date, age) is kept beside
the labels and applies on every later run (`--force` too) where options, manifest and path
template leave it empty (issue 21).
A decision applies only to that content: the file changed since, the decision is ignored (with
a warning) and the file is classified again. Every save rewrites the file atomically (temporary
file, fsync, rename), so a killed server or a closed browser never leaves half a row.

Any number of writers share one file (two browser tabs, two `review` servers, `--confirm`): a
save takes an exclusive lock (`OUT/.orthovision/decisions.lock`), re-reads the file, applies
only its own rows and writes the result, so no writer erases another's decisions. The file is
read without following a link and only when it is a regular file (a FIFO would block).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import stat
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import outlock
from .errors import LabelError, UsageError
from .labels.model import TAGS, Label, Labels, Tag
from .manifest import clean_patient, user_label

DECISIONS_NAME = "orthovision-decisions.csv"
LOCK_NAME = ".orthovision/decisions.lock"
MAX_FILE = 256 << 20  # ~1M decisions; a larger "decisions file" is not one
# The subject data `convert --confirm` asks when nothing else gives it (PatientInfo fields).
SUBJECT_FIELDS = ("patient_id", "study_date", "age")
COLUMNS = ("input", "sha256", *TAGS, *SUBJECT_FIELDS, "decided_by", "decided_at", "decided_tags")
ALL_TAGS = " ".join(TAGS)
PERSON = "person"  # the label source recorded in reports and in the DICOM provenance
# The pack the review page taught from this output's decisions (review/rescore.py): later runs
# into the output use it when no --models is given; its labels are the taught model's.
TAUGHT_PACK = Path(".orthovision") / "taught-pack"


def taught_pack(output: Path | None) -> Path | None:
    if output is None:
        return None
    path = output / TAUGHT_PACK
    return path if (path / "manifest.json").is_file() else None


@dataclass(frozen=True)
class Decision:
    input: str
    sha256: str
    modality: str = ""
    protocol: str = ""
    body_part: str = ""
    orientation: str = ""
    decided_by: str = ""
    decided_at: str = ""
    decided_tags: str = ALL_TAGS  # space-separated, in TAGS order
    patient_id: str = ""  # subject data (SUBJECT_FIELDS), normalised as PatientInfo holds it
    study_date: str = ""
    age: str = ""

    def value(self, tag: Tag) -> str:
        return str(getattr(self, tag))

    def subject(self) -> dict[str, str]:
        """The subject fields the person gave (empty ones left out)."""
        return {f: v for f in SUBJECT_FIELDS if (v := str(getattr(self, f)))}

    @property
    def tags(self) -> tuple[Tag, ...]:
        """The tags the person set or confirmed."""
        named = set(self.decided_tags.split())
        return tuple(t for t in TAGS if t in named)

    @property
    def complete(self) -> bool:
        return len(self.tags) == len(TAGS)

    def labels(self) -> Labels:
        """The person's labels, decided tags only: certain (1.0), source `person`; an empty
        value the person chose stays unknown."""
        out = Labels()
        for tag in self.tags:
            v = self.value(tag)
            try:
                lab = user_label(tag, v, PERSON) if v else Label(tag, None, 1.0, PERSON)
            except UsageError as exc:  # a decisions file edited by hand: this file's reason
                raise LabelError(f"decision: {exc.message}", path=self.input) from exc
            out = out.with_label(lab)
        return out


def merged(earlier: Decision | None, later: Decision) -> Decision:
    """`later` on top of `earlier` for the same content: a decision about one tag keeps the
    person's earlier answers about the others."""
    if earlier is None or earlier.sha256 != later.sha256:
        return later
    subject = {**earlier.subject(), **later.subject()}
    if later.complete:
        return replace(later, **subject)
    values = {t: later.value(t) if t in later.tags else earlier.value(t) for t in TAGS}
    tags = set(earlier.tags) | set(later.tags)
    return replace(later, **values, **subject, decided_tags=" ".join(t for t in TAGS if t in tags))


def clean(decision: Decision) -> Decision:
    """Normalise the values as a manifest row would be; raises UsageError on a bad one.
    A tag the person did not decide keeps no value."""
    bad = set(decision.decided_tags.split()) - set(TAGS)
    if bad:
        raise UsageError(f"decision for {decision.input}: no such tag {', '.join(sorted(bad))}")
    values = {}
    for tag in TAGS:
        v = decision.value(tag).strip() if tag in decision.tags else ""
        values[tag] = (user_label(tag, v, PERSON).value or "") if v else ""
    if not decision.sha256 or len(decision.sha256) != 64:
        raise UsageError(f"decision for {decision.input}: no content hash")
    subject = clean_patient(decision.subject())
    return Decision(
        decision.input,
        decision.sha256,
        values["modality"],
        values["protocol"],
        values["body_part"],
        values["orientation"],
        decision.decided_by,
        decision.decided_at,
        " ".join(decision.tags),
        **{f: getattr(subject, f) for f in SUBJECT_FIELDS},
    )


def decisions_path(output: Path) -> Path:
    return output / DECISIONS_NAME


def load(output: Path) -> dict[str, Decision]:
    """The decisions in an output folder, by input path; the last row for a path wins."""
    path = decisions_path(output)
    try:
        raw = read_regular(path, MAX_FILE)
        # A path that is not UTF-8 (Latin-1 bytes) is kept byte for byte: surrogateescape.
        text = raw.decode("utf-8", "surrogateescape") if raw is not None else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", path=path) from exc
    out: dict[str, Decision] = {}
    # newline="": newlines inside quoted paths kept
    for row in csv.DictReader(io.StringIO(text, newline="")):
        if not row.get("input"):
            continue
        # The path exactly as written (a file name may end with a space); values trimmed.
        values = {c: (row.get(c) or "") if c == "input" else (row.get(c) or "").strip() for c in COLUMNS}
        if row.get("decided_tags") is None:  # written before the column: all four decided
            values["decided_tags"] = ALL_TAGS
        out[row["input"]] = Decision(**values)
    return out


def read_regular(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of `path` if it is a regular file (not a link, FIFO or device: opened without
    following a link, non-blocking, so a FIFO never hangs the reader); None if it does not
    exist. Raises OSError (a link, not a regular file, larger than `max_bytes`, unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symbolic link, not read") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"larger than {max_bytes} bytes")
        return f.read(max_bytes + 1)[:max_bytes]


def locked(output: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on the decisions of `output`, across processes (`outlock`)."""
    return outlock.locked(output, LOCK_NAME)


class DecisionBook:
    """The decisions of one output folder, shared by the threads of the review server and by
    other processes on the same folder (each save merges into what is on disk then)."""

    def __init__(self, output: Path):
        self.output = output
        self.path = decisions_path(output)
        self._lock = threading.Lock()
        self.by_input = load(output)
        self._seen = self._signature()

    def _signature(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self) -> bool:
        """Re-read the file if another writer replaced it since; whether it did. An unreadable
        file keeps what was read before (UsageError is for the first load only)."""
        sig = self._signature()
        if sig == self._seen:
            return False
        with self._lock:
            try:
                self.by_input = load(self.output)
            except UsageError:
                return False
            self._seen = sig
        return True

    def get(self, input_path: str) -> Decision | None:
        return self.by_input.get(input_path)

    def labels_for(self, input_path: str, sha256: str) -> Labels | None:
        """The person's labels for this content (decided tags only), or None (no decision, or
        a stale one)."""
        d = self.current(input_path, sha256)
        return d.labels() if d is not None else None

    def current(self, input_path: str, sha256: str) -> Decision | None:
        """The decision about this very content, or None."""
        d = self.by_input.get(input_path)
        return d if d is not None and d.sha256 == sha256 else None

    def subject_for(self, input_path: str, sha256: str) -> dict[str, str]:
        """The subject data a person typed for this content ({} if none, or stale)."""
        d = self.current(input_path, sha256)
        return d.subject() if d is not None else {}

    def is_stale(self, input_path: str, sha256: str) -> bool:
        d = self.by_input.get(input_path)
        return d is not None and bool(sha256) and d.sha256 != sha256

    def save(self, decisions: list[Decision]) -> list[Decision]:
        """Record decisions (already cleaned): under the lock, the file as it is now with these
        rows merged in (with earlier answers about the same content), written atomically;
        other writers' rows are kept. Returns them as recorded."""
        with self._lock, locked(self.output):
            book = load(self.output)
            for d in decisions:
                book[d.input] = merged(book.get(d.input), d)
            _write_atomic(self.path, book.values())
            self.by_input = book
            self._seen = self._signature()
            return [book[d.input] for d in decisions]


def _write_atomic(path: Path, rows: object) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)  # CRLF (RFC 4180): a "\r" in a path is quoted too
    w.writeheader()
    for d in rows:  # type: ignore[attr-defined]
        w.writerow(asdict(d))
    outlock.write_atomic(path, buf.getvalue(), "decisions to ", newline="")
