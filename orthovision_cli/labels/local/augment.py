"""Augmentations for fitting heads on a handful of images.

Each function takes and returns an RGB uint8 array. The mix imitates how the same kind of image
reaches an archive differently: crops and scale, contrast and gamma (exposure, film density,
scanner settings), sensor noise and JPEG quality, film borders, labels and redaction boxes burnt
in, a film lying on a white scanner bed, a slight colour cast or chroma noise (greyscale saved as
colour JPEG), small tilts.

A left-right mirror changes the meaning of some labels (a right buccal view mirrored looks like a
left one; a right profile like a left profile): `augment` mirrors only when the caller says the
label survives it (`mirror_ok`), and `mirror_safe(label)` gives the project's answer.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageFilter

# Labels whose meaning a left-right mirror changes: sided views (ADA-1100 EV/IV codes with a
# side, the kinds the intraoral-view head and the face pose tell apart).
SIDED_LABELS = frozenset(
    {
        "right_buccal",
        "left_buccal",
        "right_profile",
        "left_profile",
        "right_three_quarter",
        "left_three_quarter",
        "facing_right",
        "facing_left",
    }
    | {f"EV{n:02d}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)}
    | {f"EV{n:02d}" for n in range(22, 36)}
    | {f"IV{n:02d}" for n in (1, 2, 3, 4, 5, 6, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23)}
)


def mirror_safe(label: str) -> bool:
    """True when a left-right mirror of an image keeps `label` true."""
    return label not in SIDED_LABELS


def _gamma_contrast(a: np.ndarray, rng: random.Random) -> np.ndarray:
    x = a.astype(np.float32) / 255.0
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.6, 1.6)
    lo, hi = rng.uniform(0.0, 0.12), rng.uniform(0.85, 1.0)
    x = lo + x * (hi - lo)
    return np.asarray(np.clip(x * 255.0, 0, 255), np.uint8)


def _noise(a: np.ndarray, rng: random.Random, sigma: float) -> np.ndarray:
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    n = nrng.normal(0.0, sigma, a.shape[:2])[..., None]
    return np.asarray(np.clip(a.astype(np.float32) + n, 0, 255), np.uint8)


def _crop(im: Image.Image, rng: random.Random, min_keep: float) -> Image.Image:
    w, h = im.size
    kw, kh = rng.uniform(min_keep, 1.0), rng.uniform(min_keep, 1.0)
    cw, ch = max(8, round(w * kw)), max(8, round(h * kh))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return im.crop((x0, y0, x0 + cw, y0 + ch))


def _border(a: np.ndarray, rng: random.Random) -> np.ndarray:
    """A frame around the picture: unexposed film (black), clear film or a white scanner bed."""
    h, w = a.shape[:2]
    value = rng.choice([0, 10, 235, 255])
    t, b = round(h * rng.uniform(0, 0.12)), round(h * rng.uniform(0, 0.12))
    left, r = round(w * rng.uniform(0, 0.12)), round(w * rng.uniform(0, 0.12))
    out = np.full((h + t + b, w + left + r, 3), value, np.uint8)
    out[t : t + h, left : left + w] = a
    return out


def _box(a: np.ndarray, rng: random.Random, colour: bool) -> np.ndarray:
    """A label or redaction box: white, black or (colour=True) a coloured one."""
    out = a.copy()
    h, w = a.shape[:2]
    bw, bh = round(w * rng.uniform(0.08, 0.3)), round(h * rng.uniform(0.04, 0.12))
    x0, y0 = rng.randint(0, max(0, w - bw)), rng.randint(0, max(0, h - bh))
    if colour:
        fill = [rng.randint(0, 255) for _ in range(3)]
    else:
        g = rng.choice([0, 255])
        fill = [g, g, g]
    out[y0 : y0 + bh, x0 : x0 + bw] = fill
    return out


def _tilt(im: Image.Image, rng: random.Random) -> Image.Image:
    return im.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BILINEAR, expand=False)


def _jpeg(im: Image.Image, rng: random.Random) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=rng.randint(30, 95))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def colour_cast(a: np.ndarray, rng: random.Random) -> np.ndarray:
    """A greyscale picture saved as colour: a slight tint plus JPEG-like chroma noise."""
    x = a.astype(np.float32)
    tint = np.array([rng.uniform(-12, 12) for _ in range(3)], np.float32)
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    chroma = nrng.normal(0.0, rng.uniform(1.0, 6.0), x.shape).astype(np.float32)
    return np.asarray(np.clip(x + tint + chroma, 0, 255), np.uint8)


def augment(
    rgb: np.ndarray,
    rng: random.Random,
    *,
    mirror_ok: bool,
    greyscale: bool,
    strong: bool = True,
) -> np.ndarray:
    """One random variant of `rgb` (never mirrored unless `mirror_ok`)."""
    im = Image.fromarray(rgb)
    if strong and rng.random() < 0.8:
        im = _crop(im, rng, 0.72)
    if rng.random() < 0.4:
        im = _tilt(im, rng)
    if mirror_ok and rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = rng.uniform(0.35, 1.0)
    if scale < 0.95:
        w, h = im.size
        im = im.resize((max(16, round(w * scale)), max(16, round(h * scale))))
    if rng.random() < 0.2:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    a = np.asarray(im.convert("RGB"))
    a = _gamma_contrast(a, rng) if greyscale else _photo_light(a, rng)
    if rng.random() < 0.4:
        a = _noise(a, rng, rng.uniform(2, 10))
    if greyscale and strong and rng.random() < 0.35:
        a = _border(a, rng)
    if strong and rng.random() < 0.3:
        a = _box(a, rng, colour=not greyscale or rng.random() < 0.3)
    if greyscale and rng.random() < 0.2:
        a = colour_cast(a, rng)
    if rng.random() < 0.5:
        a = np.asarray(_jpeg(Image.fromarray(a), rng))
    return np.ascontiguousarray(a)


def _photo_light(a: np.ndarray, rng: random.Random) -> np.ndarray:
    """Exposure, white balance and saturation of a photograph."""
    x = a.astype(np.float32)
    x = x * rng.uniform(0.7, 1.3) + rng.uniform(-20, 20)
    x = x * np.array([rng.uniform(0.9, 1.1) for _ in range(3)], np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.6, 1.3)
    return np.asarray(np.clip(x, 0, 255), np.uint8)
