"""The labels seam: what every classifier (user input, EXIF, local models, remote IG service)
returns for one image.

Four tags, each a `Label` with a value, its codes where they exist, a confidence in [0, 1] and
where it came from. `Labels` holds one label per tag (or none: unknown). Classifiers implement
`LabelSource`; `labels.fuse` merges several sources into one `Labels`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..types import Code, Orientation
from ..vocab.tags import TAG_ALIASES, TAGS, Tag, normalise_tag

# Re-exported: classifiers read the whole labels seam from this one module.
__all__ = [
    "TAGS",
    "TAG_ALIASES",
    "Code",
    "ImageLike",
    "Label",
    "LabelSource",
    "Labels",
    "Orientation",
    "Tag",
    "normalise_tag",
]


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
    """What a classifier may look at: the path (for name hints), the bytes, a preview on demand
    (`inputs.source.SourceImage` is the one the batch gives)."""

    @property
    def path(self) -> Path: ...

    def read_bytes(self) -> bytes: ...

    def preview(self, max_side: int = 256) -> Any: ...


class LabelSource(Protocol):
    """A classifier: options, manifest, EXIF, file-name hints, local ONNX pack, remote IG service."""

    name: str

    def classify(self, image: ImageLike) -> Labels:
        """Labels for one image (unknown tags left None). Raises InputError for this image only."""
        ...
