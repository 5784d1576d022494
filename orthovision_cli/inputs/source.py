"""`SourceImage`: one input file as the pipeline sees it, with cheap facts and a preview on demand."""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UnreadableInput

if TYPE_CHECKING:
    import numpy as np

HASH_CHUNK = 1 << 20


def content_hash(path: Path) -> str:
    """sha256 of the file's bytes (hex), hashed from a memory map (no Python-side copies);
    raises UnreadableInput."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    h.update(mm)
    except (OSError, ValueError) as exc:
        text = getattr(exc, "strerror", None) or str(exc)
        raise UnreadableInput(f"cannot read file: {text}", path=path) from exc
    return h.hexdigest()


@contextmanager
def mapped(path: Path) -> Iterator[tuple[mmap.mmap | None, os.stat_result]]:
    """The file opened once: its stat and a read-only map (None for an empty file), for hashing
    and probing from the same pages; raises UnreadableInput."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise UnreadableInput(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    with f:
        try:
            st = os.fstat(f.fileno())
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if st.st_size else None
        except (OSError, ValueError) as exc:
            text = getattr(exc, "strerror", None) or str(exc)
            raise UnreadableInput(f"cannot read file: {text}", path=path) from exc
        try:
            yield mm, st
        finally:
            if mm is not None:
                mm.close()


def hash_mapped(mm: mmap.mmap | None) -> str:
    """As `content_hash`, of a map from `mapped`."""
    h = hashlib.sha256()
    if mm is not None:
        h.update(mm)
    return h.hexdigest()


@dataclass
class SourceImage:
    """One input image. `path` is where it lies; `rel` is its path below the input root (POSIX)."""

    path: Path
    rel: str = ""
    format: str = ""  # "jpeg", "tiff", "png", ... (sniffed from content)
    page: int = 0  # page of a multi-page file (0 for single images)
    # The readers' probe has bounded this file (sizes, pages, --max-pixels): the preview need
    # not probe it again (batch.analyse probes every input before it is classified).
    probed: bool = False
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise UnreadableInput(f"cannot read file: {exc.strerror or exc}", path=self.path) from exc

    def preview(self, max_side: int = 256) -> np.ndarray:
        """An RGB uint8 preview whose longer side is at most about `max_side` pixels (upright as
        stored, no EXIF rotation applied). Decodes only what is needed (JPEG draft mode)."""
        key = f"preview:{max_side}"
        if key not in self._cache:
            from .preview import load_preview

            self._cache[key] = load_preview(self.path, max_side, probed=self.probed)
        return self._cache[key]
