"""The image a conformance run submits when the user names none."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def sample_image() -> tuple[bytes, str]:
    """A small synthetic colour photograph (JPEG, no metadata), made here: no patient in it."""
    y, x = np.mgrid[0:192, 0:256]
    rgb = np.stack([(x % 256), (y * 255 // 191), ((x + y) % 256)], axis=-1).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue(), "image/jpeg"
