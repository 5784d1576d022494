"""Augmentations for the radiograph kind head beyond `augment`: how the same kind reaches an
archive from another scanner, and how intraoral films look when only three are open.

- `source_shift`: what a new scanner or export changes without changing the kind: a contrast
  curve far outside `augment`'s (histogram stretch, equalisation, strong gamma, a washed-out
  film), the stored size (down to a thumbnail and back), a tight or loose crop, a frame;
- `film_look`: an intraoral film as practices store it: rounded corners on a light box (white),
  on a dark scanner lid or on grey, the embossed dot near a corner, a photograph's light
  fall-off;
- `negative_of`: the picture as a negative (bone dark), as some exports and intraoral sensor
  programs store it; the polarity head learns positives from negatives on it (a picture it
  finds a negative goes to a person: `radiograph_labels`);
- `pseudo_intraoral`: a periapical-like or bitewing-like cut of a panoramic radiograph (the
  teeth of one jaw with their roots; the crowns of both jaws at the occlusal plane), sharpened
  as an intraoral film is, with `film_look`. Such cuts belong to the panoramic's source when
  the head is measured leave-one-source-out, and are never evaluated.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps


def source_shift(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """One scanner-like variant of an upright greyscale picture (kept greyscale RGB)."""
    im = Image.fromarray(rgb).convert("L")
    w, h = im.size
    if rng.random() < 0.5:  # a tighter or looser crop of the same film
        k = rng.uniform(0.8, 1.0)
        cw, ch = max(8, round(w * k)), max(8, round(h * rng.uniform(0.8, 1.0)))
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        im = im.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:  # stored small (an export, a thumbnail) then looked at again
        s = rng.uniform(0.15, 0.5)
        small = im.resize((max(12, round(im.width * s)), max(12, round(im.height * s))))
        im = small.resize(im.size, Image.Resampling.BILINEAR)
    curve = rng.choice(("equalize", "autocontrast", "gamma", "flat"))
    if curve == "equalize":
        im = ImageOps.equalize(im)
    elif curve == "autocontrast":
        im = ImageOps.autocontrast(im, cutoff=rng.uniform(0.0, 3.0))
    a = np.asarray(im, np.float32) / 255.0
    if curve == "gamma":
        a = a ** rng.choice((rng.uniform(0.35, 0.6), rng.uniform(1.7, 2.8)))
    elif curve == "flat":  # a washed-out film: compressed into a narrow grey band
        lo = rng.uniform(0.1, 0.4)
        a = lo + a * rng.uniform(0.3, 0.55)
    out = np.clip(a * 255.0, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        pad = [round(d * rng.uniform(0.02, 0.1)) for d in (out.shape[0], out.shape[1])]
        fill = rng.choice((0, 128, 255))
        out = np.pad(out, ((pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
    return np.ascontiguousarray(np.stack([out] * 3, axis=2))


def negative_of(rgb: np.ndarray) -> np.ndarray:
    """The 8-bit picture with its grey levels inverted."""
    return np.ascontiguousarray(255 - np.asarray(rgb, np.uint8))


def film_look(rgb: np.ndarray, rng: random.Random) -> np.ndarray:
    """An intraoral film: rounded corners on a light box, a dark lid or grey; the embossed dot;
    sometimes a photograph's uneven light."""
    im = Image.fromarray(rgb).convert("L")
    w, h = im.size
    surround = rng.choice((255, 245, 20, 128))
    margin = round(min(w, h) * rng.uniform(0.0, 0.15))
    canvas = Image.new("L", (w + 2 * margin, h + 2 * margin), surround)
    mask = Image.new("L", (w, h), 0)
    radius = round(min(w, h) * rng.uniform(0.04, 0.12))
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, w - 1, h - 1), radius=radius, fill=255)
    canvas.paste(im, (margin, margin), mask)
    if rng.random() < 0.6:  # the embossed dot: a small ring near one corner
        r = max(2, round(min(w, h) * rng.uniform(0.02, 0.035)))
        cx = margin + (r * 3 if rng.random() < 0.5 else w - r * 3)
        cy = margin + (r * 3 if rng.random() < 0.5 else h - r * 3)
        d = ImageDraw.Draw(canvas)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=rng.choice((40, 200)), width=max(1, r // 2))
    a = np.asarray(canvas, np.float32)
    if rng.random() < 0.4:  # light fall-off of a photograph of the film
        yy, xx = np.mgrid[0 : a.shape[0], 0 : a.shape[1]].astype(np.float32)
        cy, cx = a.shape[0] * rng.uniform(0.3, 0.7), a.shape[1] * rng.uniform(0.3, 0.7)
        dist = np.hypot((yy - cy) / a.shape[0], (xx - cx) / a.shape[1])
        a = a * (1.0 - rng.uniform(0.1, 0.35) * dist)
    out = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.stack([out] * 3, axis=2))


def pseudo_intraoral(pano: np.ndarray, rng: random.Random, kind: str) -> np.ndarray:
    """A `kind` ('periapical' or 'bitewing') cut of an upright panoramic radiograph."""
    h, w = pano.shape[:2]
    side = rng.choice((0.12, 0.72))  # the posterior teeth of either side ...
    if kind == "bitewing":
        cw, ch = w * rng.uniform(0.16, 0.24), h * rng.uniform(0.3, 0.42)
        x0 = w * (side + rng.uniform(-0.03, 0.06))
        y0 = h * rng.uniform(0.47, 0.53) - ch / 2  # centred on the occlusal plane
    else:
        if rng.random() < 0.35:  # ... or the front teeth, on a portrait film
            side = rng.uniform(0.4, 0.5)
            cw, ch = w * rng.uniform(0.08, 0.12), h * rng.uniform(0.35, 0.45)
        else:
            cw, ch = w * rng.uniform(0.14, 0.2), h * rng.uniform(0.32, 0.42)
        x0 = w * (side + rng.uniform(-0.02, 0.04))
        # One jaw, from just past its crowns (the occlusal plane at about half the height) to
        # beyond the roots.
        y0 = h * rng.uniform(0.5, 0.55) - ch if rng.random() < 0.5 else h * rng.uniform(0.45, 0.5)
    box = (round(x0), round(max(0.0, y0)), round(min(w, x0 + cw)), round(min(h, y0 + ch)))
    im = Image.fromarray(pano).convert("L").crop(box)
    im = im.filter(ImageFilter.UnsharpMask(radius=2, percent=rng.randint(80, 200), threshold=2))
    im = ImageOps.autocontrast(im, cutoff=1)
    return film_look(np.stack([np.asarray(im)] * 3, axis=2), rng)
