"""What the user says about their images: CLI options, a CSV manifest, a path template.

Each gives patient/study data (`PatientInfo`) and label overrides (confidence 1.0, a person
said so). Precedence, most specific last: path template < manifest folder rows (outer to inner)
< manifest file row < CLI options.
"""

from __future__ import annotations

import contextlib
import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from .dicom.plan import PatientInfo
from .dicom.timepoints import parse_timepoint
from .dicom.vr import PATIENT_VRS, implausible_date, problem
from .errors import LabelError, UsageError
from .labels.facts import parse_radiographs
from .labels.model import Label, Labels
from .vocab.check import canonical_label
from .vocab.tags import Tag

# Manifest column (case-insensitive, spaces/underscores ignored) -> PatientInfo field or label tag.
PATIENT_COLUMNS = {
    "patientid": "patient_id",
    "patientname": "patient_name",
    "birthdate": "birth_date",
    "patientbirthdate": "birth_date",
    "sex": "sex",
    "patientsex": "sex",
    "studydate": "study_date",
    "accessionnumber": "accession",
    "accession": "accession",
    "studydescription": "study_description",
    "referringphysician": "referring_physician",
    "referringphysicianname": "referring_physician",
    "institution": "institution",
    "institutionname": "institution",
    "laterality": "laterality",
    "age": "age",
    "patientage": "age",
    "operator": "operator",
    "operatorsname": "operator",
    "physicianofrecord": "physician_of_record",
    "physiciansofrecord": "physician_of_record",
    "timezone": "timezone",
    "timezoneoffsetfromutc": "timezone",
    "timepoint": "timepoint",
    "treatmentstart": "treatment_start",
}
# Batch facts (labels.facts) a folder or file row may state.
FACT_COLUMNS = {"radiographs": "radiographs"}
LABEL_COLUMNS: dict[str, Tag] = {
    "modality": "modality",
    "protocol": "protocol",
    "view": "protocol",
    "bodypart": "body_part",
    "bodypartexamined": "body_part",
    "orientation": "orientation",
}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def normalise_date(value: str, what: str = "date") -> str:
    """Accept YYYYMMDD, YYYY-MM-DD, YYYY:MM:DD, DD.MM.YYYY; return YYYYMMDD or raise UsageError."""
    v = value.strip()
    if not v:
        return ""
    for fmt in ("%Y%m%d", "%Y-%m-%d", "%Y:%m:%d", "%d.%m.%Y", "%Y/%m/%d"):
        try:
            return datetime.strptime(v, fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    raise UsageError(f"{what} {value!r} is not a date (use YYYY-MM-DD)")


def normalise_sex(value: str) -> str:
    v = value.strip().upper()
    if not v:
        return ""
    mapping = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O", "W": "F"}
    if v not in mapping:
        raise UsageError(f"sex {value!r} must be M, F or O")
    return mapping[v]


def normalise_age(value: str) -> str:
    """`12`, `12y`, `8 months`, `3w`, `012Y` -> DICOM AS (`012Y`, `008M`, ...)."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*([dwmy]?)[a-z]*\s*", value.lower())
    if not m:
        raise UsageError(f"age {value!r} is not an age (12, 12Y, 8M, 3W, 10D)")
    return f"{int(m.group(1)):03d}{(m.group(2) or 'y').upper()}"


def normalise_timezone(value: str) -> str:
    """`+01:00`, `+0100`, `-5`, `UTC` -> DICOM's `+HHMM` (Timezone Offset From UTC)."""
    v = value.strip().upper()
    if v in ("UTC", "Z", "GMT"):
        return "+0000"
    m = re.fullmatch(r"([+-])(\d{1,2})(?::?(\d{2}))?", v)
    if not m or int(m.group(2)) > 14 or int(m.group(3) or 0) >= 60:
        raise UsageError(f"timezone {value!r} is not an offset from UTC (+0100, -05:00, UTC)")
    return f"{m.group(1)}{int(m.group(2)):02d}{m.group(3) or '00'}"


def clean_patient(info: dict[str, str]) -> PatientInfo:
    values = {k: v.strip() for k, v in info.items() if v is not None}
    if "birth_date" in values:
        values["birth_date"] = normalise_date(values["birth_date"], "birth date")
    if "study_date" in values:
        values["study_date"] = normalise_date(values["study_date"], "study date")
    if "sex" in values:
        values["sex"] = normalise_sex(values["sex"])
    if "laterality" in values:
        lat = values["laterality"].upper()[:1]
        if lat and lat not in "RL":
            raise UsageError(f"laterality {info['laterality']!r} must be R or L")
        values["laterality"] = lat
    if "age" in values:
        values["age"] = normalise_age(values["age"])
    if "treatment_start" in values:
        values["treatment_start"] = normalise_date(values["treatment_start"], "treatment start")
    if "timepoint" in values:
        try:
            values["timepoint"] = parse_timepoint(values["timepoint"])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if values.get("timezone"):
        values["timezone"] = normalise_timezone(values["timezone"])
    if "patient_name" in values:
        # DICOM PN: family^given. "Doe, Jane" is a common spelling in spreadsheets.
        name = values["patient_name"]
        if "^" not in name and "," in name:
            family, given = (part.strip() for part in name.split(",", 1))
            name = f"{family}^{given}"
        values["patient_name"] = name
    # Every value by its VR, before anything is written: never cut, never split by a PACS.
    for key, value in values.items():
        keyword, vr = PATIENT_VRS[key]
        why = implausible_date(value) if vr == "DA" else problem(vr, value)
        if why:
            raise UsageError(f"{keyword}: {why}")
    birth, study = values.get("birth_date", ""), values.get("study_date", "")
    if birth and study and birth > study:
        raise UsageError(f"PatientBirthDate: {_iso(birth)} is after the study date {_iso(study)}")
    return PatientInfo(**values)


def _iso(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:]}"


def user_label(tag: Tag, value: str, source: str) -> Label:
    """A value a person gave, in the vocabulary's terms (a body part synonym to its defined term,
    "panoramic" to PANORAMIC, "ev-08" to EV08); UsageError naming the nearest valid ones."""
    try:
        value = canonical_label(tag, value)
    except LabelError as exc:
        raise UsageError(exc.message) from None
    return Label(tag, value, 1.0, source)


@dataclass
class ManifestRow:
    key: str  # POSIX path, relative or absolute, as written (normalised)
    patient: dict[str, str] = field(default_factory=dict)
    labels: dict[Tag, str] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)  # radiographs: film or digital
    line: int = 0  # in the manifest file (0: not from a file)


class Manifest:
    """A CSV with a `path` column (file or folder) and any of the known columns."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[str, ManifestRow] = {}
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise UsageError(f"cannot read manifest {path}: {exc.strerror or exc}", path=path) from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"manifest {path} is not UTF-8 text", path=path) from exc
        dialect: type[csv.Dialect] | csv.Dialect = csv.excel
        with contextlib.suppress(csv.Error):
            dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else "", delimiters=",;\t")
        reader = csv.DictReader(text.splitlines(), dialect=dialect)
        if not reader.fieldnames:
            raise UsageError(f"manifest {path} has no header row", path=path)
        columns = {name: _norm(name) for name in reader.fieldnames}
        path_cols = [n for n, c in columns.items() if c in ("path", "file", "folder", "filename")]
        if not path_cols:
            raise UsageError(f"manifest {path} needs a 'path' column", path=path)
        unknown = [
            n
            for n, c in columns.items()
            if n not in path_cols
            and c not in PATIENT_COLUMNS
            and c not in LABEL_COLUMNS
            and c not in FACT_COLUMNS
        ]
        if unknown:
            raise UsageError(f"manifest {path}: unknown column(s) {', '.join(unknown)}", path=path)
        for lineno, raw in enumerate(reader, start=2):
            key = (raw.get(path_cols[0]) or "").strip().replace("\\", "/").rstrip("/")
            if not key:
                raise UsageError(f"manifest {path} line {lineno}: empty path", path=path)
            row = ManifestRow(str(PurePosixPath(key)), line=lineno)
            for name, col in columns.items():
                value = (raw.get(name) or "").strip()
                if not value or name in path_cols:
                    continue
                if col in PATIENT_COLUMNS:
                    row.patient[PATIENT_COLUMNS[col]] = value
                elif col in FACT_COLUMNS:
                    row.facts[FACT_COLUMNS[col]] = value
                else:
                    row.labels[LABEL_COLUMNS[col]] = value
            try:
                if "radiographs" in row.facts:
                    row.facts["radiographs"] = parse_radiographs(row.facts["radiographs"], "Radiographs")
                clean_patient(row.patient)
                for tag, value in row.labels.items():
                    user_label(tag, value, "manifest")
            except UsageError as exc:
                raise UsageError(f"manifest {path} line {lineno}: {exc.message}", path=path) from exc
            self.rows[row.key] = row

    def matches(self, rel: str, absolute: Path) -> list[ManifestRow]:
        """Rows that apply to a file, outermost folder first, the file's own row last."""
        candidates = [PurePosixPath(rel), PurePosixPath(absolute.as_posix())]
        hits: list[tuple[int, ManifestRow]] = []
        for cand in candidates:
            parts = cand.parts
            for depth in range(len(parts), 0, -1):
                key = str(PurePosixPath(*parts[:depth]))
                if key in self.rows:
                    hits.append((depth, self.rows[key]))
        hits.sort(key=lambda h: h[0])
        seen: set[int] = set()
        out = []
        for _, row in hits:
            if id(row) not in seen:
                seen.add(id(row))
                out.append(row)
        return out

    def unmatched(self, inputs: list[tuple[str, Path]]) -> list[str]:
        """A line for each row that matches none of `inputs` ((rel, absolute) each): a typo in
        a name or folder would otherwise leave those files without their patient."""
        prefixes: set[str] = set()
        for rel, absolute in inputs:
            for cand in (PurePosixPath(rel), PurePosixPath(absolute.as_posix())):
                parts = cand.parts
                prefixes.update(str(PurePosixPath(*parts[:depth])) for depth in range(1, len(parts) + 1))
        folded = {p.casefold(): p for p in prefixes}
        out = []
        for row in self.rows.values():
            if row.key in prefixes:
                continue
            near = folded.get(row.key.casefold())
            hint = f" (did you mean {near!r}? names are case-sensitive)" if near else ""
            out.append(f"line {row.line}: {row.key!r} matches no input{hint}")
        return out


class PathTemplate:
    """`{PatientID}/{StudyDate}/*`: fields read from the input's path below its root."""

    FIELD_RE = re.compile(r"\{(\w+)\}")

    def __init__(self, template: str):
        self.template = template.strip().strip("/")
        parts = []
        self.fields: list[str] = []
        for seg in self.template.split("/"):
            if seg in ("*", "**"):
                parts.append(".*")
                continue
            pattern = ""
            pos = 0
            for m in self.FIELD_RE.finditer(seg):
                pattern += re.escape(seg[pos : m.start()]).replace(r"\*", "[^/]*")
                name = m.group(1)
                col = _norm(name)
                if col not in PATIENT_COLUMNS and col not in LABEL_COLUMNS:
                    raise UsageError(f"path template field {{{name}}} is not a known field")
                self.fields.append(col)
                pattern += f"(?P<f{len(self.fields) - 1}>[^/]+)"
                pos = m.end()
            pattern += re.escape(seg[pos:]).replace(r"\*", "[^/]*")
            parts.append(pattern)
        self.regex = re.compile("/".join(parts) + "$")

    def extract(self, rel: str) -> ManifestRow | None:
        m = self.regex.match(rel)
        if not m:
            return None
        row = ManifestRow(rel)
        for i, col in enumerate(self.fields):
            value = m.group(f"f{i}")
            if col in PATIENT_COLUMNS:
                row.patient[PATIENT_COLUMNS[col]] = value
            else:
                row.labels[LABEL_COLUMNS[col]] = value
        return row


@dataclass
class UserInput:
    """Everything a user gave: options, manifest, template. Picklable."""

    options_patient: dict[str, str] = field(default_factory=dict)
    options_labels: dict[Tag, str] = field(default_factory=dict)
    manifest: Manifest | None = None
    template: PathTemplate | None = None
    notices: list[str] = field(default_factory=list)  # e.g. a Patient's Name without '^'
    options_radiographs: str = ""  # --radiographs / TOML: film or digital
    # A person's answers remembered in the output (answers.py): source folder -> film/digital.
    answered_radiographs: dict[str, str] = field(default_factory=dict)

    def radiographs_for(self, rel: str, absolute: Path) -> tuple[str, str] | None:
        """(film or digital, who said so) for one file: the option, else the deepest manifest
        row that says it, else a person's answer for the deepest folder holding the file."""
        if self.options_radiographs:
            return self.options_radiographs, "option"
        if self.manifest is not None:
            for row in reversed(self.manifest.matches(rel, absolute)):
                if row.facts.get("radiographs"):
                    return row.facts["radiographs"], "manifest"
        if not self.answered_radiographs:  # most runs: no answer to look for (a file's cost)
            return None
        parts = PurePosixPath(absolute.as_posix()).parts
        for depth in range(len(parts) - 1, 0, -1):
            said = self.answered_radiographs.get(str(PurePosixPath(*parts[:depth])))
            if said:
                return said, "person"
        return None

    def for_file(self, rel: str, absolute: Path) -> tuple[PatientInfo, Labels]:
        rows: list[tuple[str, ManifestRow]] = []
        if self.template is not None:
            row = self.template.extract(rel)
            if row is not None:
                rows.append(("path-template", row))
        if self.manifest is not None:
            rows.extend(("manifest", r) for r in self.manifest.matches(rel, absolute))
        rows.append(("option", ManifestRow(rel, dict(self.options_patient), dict(self.options_labels))))
        patient: dict[str, str] = {}
        labels = Labels()
        for source, row in rows:
            patient.update({k: v for k, v in row.patient.items() if v})
            for tag, value in row.labels.items():
                try:
                    labels = labels.with_label(user_label(tag, value, source))
                except UsageError as exc:  # a path template's value: this file's reason
                    raise LabelError(f"{source}: {exc.message}") from exc
        try:
            info = clean_patient(patient)
        except UsageError as exc:
            raise LabelError(f"patient data for this file: {exc.message}") from exc
        return info, labels
