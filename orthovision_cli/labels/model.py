"""The labels seam: what every classifier (user input, EXIF, local models, remote IG service)
returns for one image.

Four tags, each a `Label` with a value, its codes where they exist, a confidence in [0, 1] and
where it came from. `Labels` holds one label per tag (or none: unknown). Classifiers implement
`LabelSource`; `labels.fuse` merges several sources into one `Labels`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

Tag = Literal["modality", "protocol", "body_part", "orientation"]
TAGS: tuple[Tag, ...] = ("modality", "protocol", "body_part", "orientation")

# The spellings under which a tag is known: IG names, DICOM keywords and tag numbers.
TAG_ALIASES: dict[str, Tag] = {
    "modality": "modality",
    "0008,0060": "modality",
    "protocol": "protocol",
    "protocolname": "protocol",
    "0018,1030": "protocol",
    "view": "protocol",
    "body-part": "body_part",
    "body_part": "body_part",
    "bodypart": "body_part",
    "bodypartexamined": "body_part",
    "0018,0015": "body_part",
    "orientation": "orientation",
    "patientorientation": "orientation",
    "0020,0020": "orientation",
}


def normalise_tag(name: str) -> Tag | None:
    """Map `Modality`, `modality`, `0008,0060`, `(0008,0060)` ... onto one tag, or None."""
    key = name.strip().strip("()").replace(" ", "").lower()
    return TAG_ALIASES.get(key)


@dataclass(frozen=True, slots=True)
class Code:
    """A coded concept: (code value, coding scheme designator, code meaning)."""

    value: str
    scheme: str
    meaning: str

    def as_dict(self) -> dict[str, str]:
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}


@dataclass(frozen=True, slots=True)
class Orientation:
    """What must be done to the stored pixels to show the image upright.

    `rotate` is clockwise degrees (0, 90, 180, 270), applied first; `flip` then mirrors left-right.
    """

    rotate: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        if self.rotate not in (0, 90, 180, 270):
            raise ValueError(f"rotation must be 0, 90, 180 or 270, not {self.rotate}")

    @property
    def is_identity(self) -> bool:
        return self.rotate == 0 and not self.flip

    def __str__(self) -> str:
        return f"{self.rotate}{'+flip' if self.flip else ''}"

    @classmethod
    def parse(cls, text: str) -> Orientation:
        """Parse `0`, `90`, `270+flip`, `flip`, `upright`."""
        t = text.strip().lower().replace(" ", "")
        if t in ("", "upright", "none", "0"):
            return cls()
        m = re.fullmatch(r"(?:rot(?:ate)?)?(0|90|180|270)?(\+?flip|\+?mirror)?", t)
        if not m or (m.group(1) is None and m.group(2) is None):
            raise ValueError(f"not an orientation: {text!r} (use 0, 90, 180, 270, optionally +flip)")
        return cls(int(m.group(1) or 0), m.group(2) is not None)

    @classmethod
    def from_exif(cls, value: int) -> Orientation:
        """EXIF Orientation (1..8) to the correction that shows the image upright."""
        table = {
            1: cls(0, False),
            2: cls(0, True),
            3: cls(180, False),
            4: cls(180, True),
            5: cls(90, True),
            6: cls(90, False),
            7: cls(270, True),
            8: cls(270, False),
        }
        return table.get(int(value), cls())


@dataclass(frozen=True, slots=True)
class Label:
    """One tag's value for one image."""

    tag: Tag
    value: str | None  # None: unknown
    confidence: float = 1.0
    source: str = "unknown"
    codes: tuple[Code, ...] = ()
    meaning: str | None = None
    # Free-form evidence (e.g. per-class scores, model id); reported, never written to DICOM.
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within [0, 1], not {self.confidence}")

    @property
    def known(self) -> bool:
        return self.value is not None and self.value != ""

    def with_source(self, source: str) -> Label:
        return replace(self, source=source)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": self.value,
            "confidence": round(self.confidence, 4),
            "source": self.source,
        }
        if self.meaning:
            out["meaning"] = self.meaning
        if self.codes:
            out["codes"] = [c.as_dict() for c in self.codes]
        if self.detail:
            out["detail"] = dict(self.detail)
        return out


@dataclass(frozen=True, slots=True)
class Labels:
    """The four labels of one image; a missing tag is unknown."""

    modality: Label | None = None
    protocol: Label | None = None
    body_part: Label | None = None
    orientation: Label | None = None

    def get(self, tag: Tag) -> Label | None:
        return getattr(self, tag)

    def value(self, tag: Tag) -> str | None:
        lab = self.get(tag)
        return lab.value if lab is not None and lab.known else None

    def with_label(self, label: Label) -> Labels:
        return replace(self, **{label.tag: label})

    def __iter__(self) -> Iterator[Label]:
        for tag in TAGS:
            lab = self.get(tag)
            if lab is not None:
                yield lab

    @property
    def orientation_value(self) -> Orientation:
        v = self.value("orientation")
        return Orientation.parse(v) if v else Orientation()

    def as_dict(self) -> dict[str, Any]:
        return {tag: (lab.as_dict() if (lab := self.get(tag)) else None) for tag in TAGS}


class ImageLike(Protocol):
    """What a classifier may look at: the path (for name hints) and a preview on demand."""

    @property
    def path(self) -> Path: ...


class LabelSource(Protocol):
    """A classifier: options, manifest, EXIF, file-name hints, local ONNX pack, remote IG service."""

    name: str

    def classify(self, image: Any) -> Labels:
        """Labels for one image (unknown tags left None). Raises InputError for this image only."""
        ...
