"""Hand-made rules on pixel statistics: photograph vs greyscale (radiograph) vs line drawing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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
    # ... whose ink is strokes: this share of the pixels that are not paper touch paper (the
    # open drawings 0.9-0.95; a cephalogram scanned light, gamma 0.5: 0.13, a radiotherapy QA
    # film 0.34). Mostly white with broad grey areas is a light radiograph scan, or a document:
    # a radiograph at this confidence, below review (every label it gets is scaled by it).
    "drawing_min_stroke": 0.6,
    "light_radiograph_confidence": 0.6,
    "photo_confidence": 0.99,
    "radiograph_confidence": 0.9,
    # Greyscale saved as colour: after taking away what luminance explains (a tint, a cast) and
    # averaging JPEG chroma noise away on a 32 px thumbnail, at most this share stays coloured
    # (a coloured label or redaction box). Open photographs: 0.029 and more (a face on a plain
    # background); radiographs 0.0, the same with a random tint and chroma noise at most 0.0013.
    "cast_max_share": 0.01,
    "cast_max_colour_share": 1.0,
    "cast_confidence": 0.9,
    # Between the two, a coloured box on a tinted radiograph or a face on a plain background:
    # the colour rule leaves it to the grey_photo head.
    "photo_min_residual": 0.1,
}


@dataclass(frozen=True)
class PixelStats:
    colour_share: float  # share of pixels whose max - min channel difference exceeds min_chroma
    white_share: float  # grey level > 235
    mid_share: float  # 60 < grey level < 200
    residual_share: float = 0.0  # coloured share once luminance and JPEG noise are taken away
    stroke_share: float = 1.0  # share of the not-white pixels next to white (paper) ones

    def as_dict(self) -> dict[str, float]:
        return {
            "colour_share": round(self.colour_share, 4),
            "residual_share": round(self.residual_share, 4),
            "white_share": round(self.white_share, 4),
            "mid_share": round(self.mid_share, 4),
            "stroke_share": round(self.stroke_share, 4),
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
    min_chroma = int(rule.get("min_chroma", 20))
    colour_share = float((chroma > min_chroma).mean())
    return PixelStats(
        colour_share=colour_share,
        white_share=float((grey > 235).mean()),
        mid_share=float(((grey > 60) & (grey < 200)).mean()),
        residual_share=residual_share(rgb, min_chroma) if colour_share > 0 else 0.0,
        stroke_share=stroke_share(grey > 235),
    )


def stroke_share(white: np.ndarray) -> float:
    """Share of the pixels that are not white with a white one among their 8 neighbours: near 1
    for lines on paper, low for the broad areas of a radiograph."""
    ink = ~white
    if not ink.any():
        return 1.0
    p = np.pad(white, 1)
    h, w = white.shape
    near = np.zeros_like(white)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            near |= p[dy : dy + h, dx : dx + w]
    return float((ink & near).sum() / ink.sum())


def residual_share(rgb: np.ndarray, min_chroma: int) -> float:
    """Share of a 32 px thumbnail still coloured after each channel is predicted from the
    luminance by a straight line: a tinted or colour-cast greyscale picture has none left, a
    photograph (skin, lips, gums against a background of another hue) keeps most."""
    im = Image.fromarray(rgb)
    im.thumbnail((32, 32), Image.Resampling.BOX)
    a = np.asarray(im, np.float32).reshape(-1, 3)
    lum = a.mean(axis=1)
    design = np.stack([lum, np.ones_like(lum)], axis=1)
    coef, *_ = np.linalg.lstsq(design, a, rcond=None)
    res = a - design @ coef
    spread = res.max(axis=1) - res.min(axis=1)
    return float((spread > min_chroma).mean())


# The kinds of image the rule tells apart.
PHOTOGRAPH = "photograph"
RADIOGRAPH = "radiograph"
DRAWING = "drawing"
UNSURE = "unsure"


LIGHT_SCAN_NOTE = (
    "mostly white with few mid greys: a film scanned light, or a document; a person checks the labels"
)


def _paper_like(stats: dict[str, float], r: dict[str, Any]) -> bool:
    """A drawing's figures: greyscale, mostly near-white, few mid greys."""
    return (
        stats.get("colour_share", 1.0) <= float(r["grey_max_share"])
        and stats.get("white_share", 0.0) >= float(r["drawing_min_white"])
        and stats.get("mid_share", 1.0) <= float(r["drawing_max_mid"])
    )


def light_scan(stats: dict[str, float], rule: dict[str, Any]) -> bool:
    """A drawing's figures whose grey is broad areas, not strokes on paper (`image_kind` makes
    it a radiograph below review)."""
    r = {**DEFAULT_COLOUR_RULE, **rule}
    return _paper_like(stats, r) and stats.get("stroke_share", 1.0) < float(r["drawing_min_stroke"])


def image_kind(stats: PixelStats, rule: dict[str, Any]) -> tuple[str, float]:
    """(kind, confidence) from the statistics."""
    r = {**DEFAULT_COLOUR_RULE, **rule}
    if stats.colour_share >= float(r["photo_min_share"]) and stats.residual_share >= float(
        r["photo_min_residual"]
    ):
        return PHOTOGRAPH, float(r["photo_confidence"])
    if stats.colour_share <= float(r["grey_max_share"]):
        if light_scan(asdict(stats), r):
            return RADIOGRAPH, float(r["light_radiograph_confidence"])
        if _paper_like(asdict(stats), r):
            return DRAWING, 0.8
        return RADIOGRAPH, float(r["radiograph_confidence"])
    if stats.colour_share < float(r["cast_max_colour_share"]) and stats.residual_share <= float(
        r["cast_max_share"]
    ):
        return RADIOGRAPH, float(r["cast_confidence"])
    return UNSURE, 0.0
