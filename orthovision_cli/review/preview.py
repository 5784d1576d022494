"""Preview images for the review page: the stored pixels, not turned (the page turns them by
the orientation label, so what a person sees is what the DICOM will show)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

PREVIEW_SIDE = 640
_CACHE_SIZE = 256  # previews of ~30-60 kB: a few MB at most


class PreviewCache:
    def __init__(self, side: int = PREVIEW_SIDE):
        self.side = side
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, bytes] = OrderedDict()

    def jpeg(self, path: Path) -> bytes:
        key = str(path)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = render_jpeg(path, self.side)
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return data


def render_jpeg(path: Path, side: int) -> bytes:
    """JPEG bytes of the image as stored (no EXIF rotation), longer side about `side`;
    raises InputError (unreadable, corrupt)."""
    from PIL import Image

    from ..inputs.preview import load_preview

    arr = load_preview(path, side)
    im = Image.fromarray(arr)
    if max(im.size) > side:
        im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()
