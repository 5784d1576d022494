"""Hand-made rules on pixel statistics: photograph vs greyscale (radiograph) vs line drawing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

DEFAULT_COLOUR_RULE: dict[str, Any] = {
    "thumb": 128,  # statistics on a thumbnail of this longer side
    "min_chroma": 20,  # a pixel is coloured when max - min channel exceeds this
    "photo_min_share": 0.05,  # at least this share of coloured pixels: a photograph
    "grey_max_share": 0.001,  # at most this: a greyscale image
    "drawing_min_white": 0.5,  # greyscale, mostly near-white paper ...
    "drawing_max_mid": 0.25,  # ... and few mid-grey pixels: a drawing or document, not a radiograph
    "photo_confidence": 0.99,
    "radiograph_confidence": 0.9,
}


@dataclass(frozen=True)
class PixelStats:
    colour_share: float  # share of pixels whose max - min channel difference exceeds min_chroma
    white_share: float  # grey level > 235
    mid_share: float  # 60 < grey level < 200

    def as_dict(self) -> dict[str, float]:
        return {
            "colour_share": round(self.colour_share, 4),
            "white_share": round(self.white_share, 4),
            "mid_share": round(self.mid_share, 4),
        }


def pixel_stats(rgb: np.ndarray, rule: dict[str, Any]) -> PixelStats:
    thumb = int(rule.get("thumb", 128))
    if max(rgb.shape[:2]) > thumb:
        im = Image.fromarray(rgb)
        im.thumbnail((thumb, thumb), Image.Resampling.BILINEAR)
        rgb = np.asarray(im)
    a = rgb.astype(np.int16)
    chroma = a.max(axis=2) - a.min(axis=2)
    grey = a.mean(axis=2)
    return PixelStats(
        colour_share=float((chroma > int(rule.get("min_chroma", 20))).mean()),
        white_share=float((grey > 235).mean()),
        mid_share=float(((grey > 60) & (grey < 200)).mean()),
    )


# The kinds of image the rule tells apart.
PHOTOGRAPH = "photograph"
RADIOGRAPH = "radiograph"
DRAWING = "drawing"
UNSURE = "unsure"


def image_kind(stats: PixelStats, rule: dict[str, Any]) -> tuple[str, float]:
    """(kind, confidence) from the statistics."""
    r = {**DEFAULT_COLOUR_RULE, **rule}
    if stats.colour_share >= float(r["photo_min_share"]):
        return PHOTOGRAPH, float(r["photo_confidence"])
    if stats.colour_share <= float(r["grey_max_share"]):
        if stats.white_share >= float(r["drawing_min_white"]) and stats.mid_share <= float(
            r["drawing_max_mid"]
        ):
            return DRAWING, 0.8
        return RADIOGRAPH, float(r["radiograph_confidence"])
    return UNSURE, 0.0
