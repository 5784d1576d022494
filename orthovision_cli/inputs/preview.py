"""Cheap previews for classifiers: decode only what a model needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CorruptImage, UnreadableInput


def load_preview(path: Path, max_side: int) -> np.ndarray:
    """RGB uint8 array, longer side about `max_side` (>= max_side where the decoder allows)."""
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                # DCT-domain scaling: decodes 1/2, 1/4 or 1/8 of the pixels.
                im.draft("RGB", (max_side, max_side))
            im.load()
            if im.mode not in ("RGB", "L"):
                if im.mode.startswith("I;16") or im.mode in ("I", "F"):
                    arr = np.asarray(im, dtype=np.float64)
                    lo, hi = float(arr.min()), float(arr.max())
                    arr = (arr - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
                    im = Image.fromarray(arr.astype(np.uint8))
                im = im.convert("RGB")
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            arr8 = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"cannot decode preview: {exc}", path=path) from exc
    except OSError as exc:
        raise UnreadableInput(f"cannot read preview: {exc}", path=path) from exc
    return arr8
