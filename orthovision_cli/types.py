"""Plain types every layer may import: a coded concept, an orientation, what a probe of an input
found, and the pixels that go into DICOM.

No behaviour beyond small properties, and nothing heavy to import (numpy only for annotations),
so `dicom`, `labels`, `remote` and `batch` can share them without importing the readers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


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
class ExifFacts:
    acquired: datetime | None = None  # DateTimeOriginal (or DateTime), naive local time
    subsec: str = ""  # SubSecTimeOriginal digits
    tz_offset: str = ""  # OffsetTimeOriginal as DICOM "+HHMM"
    make: str = ""
    model: str = ""
    orientation: int = 1  # EXIF Orientation 1..8


@dataclass(frozen=True, slots=True)
class Segment:
    marker: int
    offset: int  # offset of the 0xFF marker byte
    length: int  # total bytes including marker and length field

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(slots=True)  # one per input, many kept: no __dict__ each
class JpegInfo:
    """Facts read from a JPEG's header segments."""

    sof_marker: int = 0
    process: str = ""
    precision: int = 8
    rows: int = 0
    columns: int = 0
    components: list[tuple[int, int, int, int]] = field(default_factory=list)  # id, h, v, tq
    adobe_transform: int | None = None  # APP14 transform flag: 0 none (RGB/CMYK), 1 YCbCr, 2 YCCK
    jfif: bool = False
    has_exif: bool = False
    exif: bytes | None = None  # APP1 Exif payload (TIFF header onward), for EXIF parsing
    icc_profile: bytes | None = None
    segments: list[Segment] = field(default_factory=list)  # header segments up to the first SOS
    scan_start: int = 0  # offset of the first SOS marker
    eoi_end: int = 0  # offset just past the image's own EOI marker
    late_segments: list[Segment] = field(default_factory=list)  # APPn/COM between scans
    file_size: int = 0
    # No Huffman table anywhere (a Motion-JPEG frame, e.g. an intraoral camera's snapshot): the
    # standard tables of ITU-T T.81 K.3 apply, and are written into the DICOM's stream.
    std_huffman: bool = False

    @property
    def samples(self) -> int:
        return len(self.components)

    @property
    def color_space(self) -> str:
        """'GRAY', 'YCbCr', 'RGB', 'CMYK' or 'YCCK', decided as libjpeg does."""
        n = self.samples
        if n == 1:
            return "GRAY"
        if n == 3:
            if self.jfif:
                return "YCbCr"
            if self.adobe_transform is not None:
                return "YCbCr" if self.adobe_transform != 0 else "RGB"
            ids = bytes(c[0] for c in self.components)
            if ids == b"RGB":
                return "RGB"
            return "YCbCr"
        if n == 4:
            return "YCCK" if self.adobe_transform == 2 else "CMYK"
        return f"{n}-component"

    @property
    def subsampled(self) -> bool:
        if self.samples < 2:
            return False
        hs = {c[1] for c in self.components}
        vs = {c[2] for c in self.components}
        return len(hs) > 1 or len(vs) > 1

    @property
    def mcu_size(self) -> tuple[int, int]:
        """(width, height) of one MCU in pixels."""
        hmax = max(c[1] for c in self.components)
        vmax = max(c[2] for c in self.components)
        return 8 * hmax, 8 * vmax


@dataclass(frozen=True, slots=True)
class PageFacts:
    rows: int
    columns: int
    samples: int
    bits: int  # bits per sample (8 or 16)
    photometric: str  # MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422, PALETTE, CMYK
    description: str = ""  # e.g. "TIFF LZW page 1"


@dataclass(slots=True)  # one per input, many kept: no __dict__ each
class Probe:
    """Cheap facts about one input file; picklable."""

    path: Path
    format: str
    size: int
    pages: list[PageFacts]
    exif: ExifFacts = field(default_factory=ExifFacts)
    dpi: tuple[float, float] | None = None  # (x, y) dots per inch
    icc_profile: bytes | None = None
    jpeg: JpegInfo | None = None  # for JPEG inputs
    mtime: float = 0.0

    @property
    def first(self) -> PageFacts:
        return self.pages[0]


@dataclass
class JpegPixels:
    """Encapsulated JPEG: either byte ranges of the source file (streamed) or new bytes."""

    info: JpegInfo
    ranges: list[tuple[int, int]] | None = None  # ranges of the source file
    data: bytes | None = None  # re-coded stream (progressive→baseline, DCT transform)

    @property
    def length(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.ranges is not None
        return sum(b - a for a, b in self.ranges)


@dataclass
class NativePixels:
    """Uncompressed frames: array shape (frames, rows, columns, samples)."""

    array: np.ndarray
    photometric: str  # MONOCHROME1, MONOCHROME2, RGB
    bits_stored: int

    @property
    def frames(self) -> int:
        return int(self.array.shape[0])


@dataclass
class Pixels:
    """What load_pixels returns for one output instance."""

    pixels: JpegPixels | NativePixels
    rows: int
    columns: int
    samples: int
    bits: int
    photometric: str
    frames: int = 1
    derivation: list[str] = field(default_factory=list)  # what was done to the source pixels
    lossy_source: bool = False  # pixels come from a lossy (JPEG) source
    lossy_method: str = "ISO_10918_1"  # DICOM Lossy Image Compression Method of the source
    orientation_applied: Orientation = field(default_factory=Orientation)


class FileStatus(StrEnum):
    """What became of one input in a run (the report's `status`)."""

    CONVERTED = "converted"
    UNCHANGED = "unchanged"
    PLANNED = "planned"  # --dry-run
    FAILED = "failed"
    REVIEW = "review"  # a person must decide its labels
    SKIPPED = "skipped"
    IGNORED = "ignored"  # not an image (a README beside the photos)
    WARNING = "warning"  # a note about an input, not an outcome


class OnCollision(StrEnum):
    """--on-collision: an output name taken by another instance."""

    OVERWRITE = "overwrite"
    SKIP = "skip"
    SUFFIX = "suffix"


class OnUncertain(StrEnum):
    """--on-uncertain: a label below --min-confidence."""

    REVIEW = "review"
    CONVERT = "convert"
    SKIP = "skip"


class EventKind(StrEnum):
    """The progress events a run sends to its caller (the CLI's progress bar, the review page)."""

    FOUND = "found"
    ANALYSED = "analysed"
    WRITTEN = "written"
    WARNING = "warning"
    UPGRADING = "upgrading"  # an older state folder's plans, once
