"""What a radiograph's pixels and header say about its film, whatever the head thinks: the
aspect, the physical size when a believable resolution is stated, left-right symmetry, a white
band dividing two views, and whether the file is a whole scanned film or a 16-bit digital
image. `radiograph` turns these measurements into cues for or against each kind.

The measurements look at shapes and relative brightness only, so a scanner's contrast curve
or export size does not move them (a washed-out film measures as a well-exposed one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

# Radiographic film formats (shorter x longer side, cm): 8 x 10, 10 x 12, 11 x 14 and 14 x 17 in;
# 18 x 24, 24 x 30, 30 x 40, 35 x 35 and 35 x 43 cm; panoramic 15 x 30 cm.
FILM_SIZES_CM = (
    (20.32, 25.4),
    (25.4, 30.48),
    (27.94, 35.56),
    (35.56, 43.18),
    (18.0, 24.0),
    (24.0, 30.0),
    (30.0, 40.0),
    (35.0, 35.0),
    (35.0, 43.0),
    (15.0, 30.0),
)
FILM_SIZE_TOLERANCE = 0.03
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16S", "I"})


@dataclass(frozen=True)
class Geometry:
    aspect: float  # longer / shorter side
    long_cm: float | None  # physical longer side when the resolution is believable
    symmetry: float  # correlation of the upright picture with its mirror image (-1..1)
    divider: float = 0.0  # share of a straight white band across the middle (two views)
    symmetry_turned: float = 0.0  # of the picture turned a quarter (top-bottom mirror)

    def turned(self, clockwise: int) -> Geometry:
        """The same picture turned: a quarter turn swaps the two axes' symmetry, the rest stays."""
        odd = clockwise % 180 != 0
        return replace(self, symmetry=self.symmetry_turned, symmetry_turned=self.symmetry) if odd else self

    def as_dict(self) -> dict[str, float | None]:
        return {
            "aspect": round(self.aspect, 3),
            "long_cm": round(self.long_cm, 1) if self.long_cm is not None else None,
            "symmetry": round(self.symmetry, 3),
            "divider": round(self.divider, 3),
            "symmetry_turned": round(self.symmetry_turned, 3),
        }


def physical_long_cm(size: tuple[int, int] | None, dpi: float | None) -> float | None:
    if size is None or dpi is None or not 150 <= dpi <= 5000:
        return None
    return max(size) / dpi * 2.54


def film_sized(size: tuple[int, int] | None, dpi: float | None) -> bool:
    """A scan of a whole film: a scanner's resolution (200-2400 dpi) stated, and at it the
    picture is a radiographic film format (within 3 %)."""
    if size is None or dpi is None or not 200 <= dpi <= 2400:
        return False
    short, long = sorted(side / dpi * 2.54 for side in size)
    return any(
        abs(short - fs) <= FILM_SIZE_TOLERANCE * fs and abs(long - fl) <= FILM_SIZE_TOLERANCE * fl
        for fs, fl in FILM_SIZES_CM
    )


def acquisition(size: tuple[int, int] | None, dpi: float | None, mode: str | None) -> str:
    """'film' (a scanned film), 'digital' (a 16-bit greyscale file) or 'unknown'."""
    if film_sized(size, dpi):
        return "film"
    if mode in SIXTEEN_BIT_MODES:
        return "digital"
    return "unknown"


def symmetry(rgb: np.ndarray) -> float:
    """Correlation of the grey picture with its left-right mirror, on a 64 x 64 thumbnail, after
    cutting 10 % at each side (borders and markers)."""
    im = Image.fromarray(rgb).convert("L").resize((64, 64), Image.Resampling.BILINEAR)
    g = np.asarray(im, np.float32)[6:-6, 6:-6]
    m = g[:, ::-1]
    a, b = g - g.mean(), m - m.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum())) + 1e-6
    return float((a * b).sum() / den)


def divider(rgb: np.ndarray) -> float:
    """Two views on one film (two knees, a hand and its oblique view): the longest straight
    white band across the middle half of the picture, row- or column-wise, as the share of its
    length that is near white (> 190) and at least 40 grey levels above both sides, on a
    160 x 160 thumbnail stretched to its own darkest and brightest (a washed-out or dark scan's
    band is as white as any). The open two-view films measured 0.92-1.0 as stored, darkened,
    washed out and under gamma 0.5 and 2; cephalograms, chests, panoramics, mammograms and
    intraoral films at most 0.69. Without the stretch a washed-out copy of a two-view knee film
    measured 0 and was written SKULL at 0.98 (`check_open_labels.py --loso --shift flat`)."""
    g = np.asarray(
        Image.fromarray(rgb).convert("L").resize((160, 160), Image.Resampling.BILINEAR), np.float32
    )
    lo, hi = float(g.min()), float(g.max())
    if hi - lo >= 1.0:
        g = (g - lo) * (255.0 / (hi - lo))
    best = 0.0
    for a in (g, g.T):
        a = a[8:-8]
        cols = np.arange(40, 120)
        line = np.maximum(np.maximum(a[:, cols - 1], a[:, cols]), a[:, cols + 1])
        left = np.mean([a[:, cols - k] for k in range(4, 8)], axis=0)
        right = np.mean([a[:, cols + k] for k in range(4, 8)], axis=0)
        band = ((line - np.minimum(left, right)) > 40) & (line > 190)
        best = max(best, float(band.mean(axis=0).max()))
    return best


def geometry(rgb: np.ndarray, size: tuple[int, int] | None, dpi: float | None) -> Geometry:
    h, w = rgb.shape[:2]
    if size is not None:
        w, h = size
    aspect = max(w, h) / max(1, min(w, h))
    turned = symmetry(np.ascontiguousarray(np.rot90(rgb)))
    return Geometry(aspect, physical_long_cm(size, dpi), symmetry(rgb), divider(rgb), turned)
