"""Faces: MediaPipe BlazeFace (full range) and FaceMesh, run as ONNX.

The detector finds the most face-like region in each of the four rotations of a photograph;
the rotation with the best score shows the face upright. Its six keypoints (eyes, nose tip, mouth,
both tragions) give the yaw; FaceMesh's lip landmarks and the pixels between the lips (teeth
shown) give the features that tell a smile from lips at rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .runner import OnnxModel

# Keypoint rows of the detector's output.
NOSE_TIP = 2
TRAGION_A = 4
TRAGION_B = 5
# FaceMesh landmark indices (canonical MediaPipe face mesh topology).
MOUTH_CORNERS = (61, 291)
INNER_LIPS = (13, 14)
OUTER_EYE_CORNERS = (33, 263)
# The inner and outer lip outlines, in order around the mouth.
INNER_LIPS_RING = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
OUTER_LIPS_RING = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
# A pixel between the lips is a tooth when brighter and greyer than the lips themselves.
TEETH_BRIGHTER = 1.15
TEETH_GREYER = 0.7


@dataclass(frozen=True)
class Face:
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1, normalised to the image
    keypoints: np.ndarray  # (6, 2) normalised x, y

    @property
    def yaw(self) -> float:
        """Nose offset from the mid-point of the tragions, in tragion distances: about 0 for a
        frontal face, positive when the face turns toward the observer's right."""
        a, b = self.keypoints[TRAGION_A], self.keypoints[TRAGION_B]
        span = abs(float(b[0] - a[0])) + 1e-6
        return float((self.keypoints[NOSE_TIP][0] - (a[0] + b[0]) / 2) / span)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-100.0, min(100.0, x))))


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Fit into a size x size black square; returns it and (offset x, offset y, scale x, scale y)
    of the picture inside it, normalised to the square."""
    h, w = rgb.shape[:2]
    s = size / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    im = Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BILINEAR)
    canvas = np.zeros((size, size, 3), np.uint8)
    ox, oy = (size - nw) // 2, (size - nh) // 2
    canvas[oy : oy + nh, ox : ox + nw] = np.asarray(im)
    return canvas, (ox / size, oy / size, nw / size, nh / size)


class FaceModels:
    """Detector plus landmark model of a pack, configured by the manifest."""

    def __init__(
        self,
        detector: OnnxModel,
        det_spec: dict[str, Any],
        mesh: OnnxModel | None,
        mesh_spec: dict[str, Any] | None,
        expression: OnnxModel | None = None,
        expression_spec: dict[str, Any] | None = None,
    ):
        self.detector = detector
        self.size = int(det_spec.get("size", 192))
        grid = int(det_spec.get("anchors", {}).get("grid", 48))
        offset = float(det_spec.get("anchors", {}).get("offset", 0.5))
        ys, xs = np.mgrid[0:grid, 0:grid]
        self.anchors = np.stack(
            [((xs + offset) / grid).ravel(), ((ys + offset) / grid).ravel()], axis=1
        ).astype(np.float32)
        self.outputs = det_spec.get("outputs", {})
        self.mesh = mesh
        self.mesh_size = int((mesh_spec or {}).get("size", 192))
        self.mesh_roi_scale = float((mesh_spec or {}).get("roi_scale", 1.5))
        self.expression = expression
        spec = expression_spec or {}
        self.expression_size = int(spec.get("size", 112))
        self.expression_mean = np.array(spec.get("mean_rgb", (122.782, 117.001, 104.298)), np.float32)
        self.expression_classes: list[str] = list(spec.get("classes", []))

    def detect(self, rgb: np.ndarray) -> Face:
        """The most face-like region (its score may be low: no face)."""
        canvas, box = letterbox(rgb, self.size)
        return self._detect_canvas(_normalise(canvas), box)

    def _detect_canvas(self, hwc: np.ndarray, placed: tuple[float, float, float, float]) -> Face:
        """`hwc`: the letterboxed square, already scaled to [-1, 1] (`_normalise`)."""
        ox, oy, sw, sh = placed
        x = np.ascontiguousarray(hwc.transpose(2, 0, 1))[None]
        names = [self.outputs.get("regressors"), self.outputs.get("scores")]
        reg, cls = self.detector.run(x, names if all(names) else None)
        scores = cls[0, :, 0]
        i = int(np.argmax(scores))
        raw = reg[0, i] / self.size
        ax, ay = self.anchors[i]
        cx, cy, w, h = raw[0] + ax, raw[1] + ay, raw[2], raw[3]
        kp = raw[4:16].reshape(6, 2) + np.array([ax, ay], np.float32)

        def unpad_x(v: Any) -> Any:
            return (v - ox) / sw

        def unpad_y(v: Any) -> Any:
            return (v - oy) / sh

        box = (
            float(unpad_x(cx - w / 2)),
            float(unpad_y(cy - h / 2)),
            float(unpad_x(cx + w / 2)),
            float(unpad_y(cy + h / 2)),
        )
        keypoints = np.stack([unpad_x(kp[:, 0]), unpad_y(kp[:, 1])], axis=1)
        return Face(_sigmoid(float(scores[i])), box, keypoints)

    def detect_rotations(self, rgb: np.ndarray) -> list[Face]:
        """Best face in each of the 4 corrections 0, 90, 180, 270 (clockwise) of `rgb`."""
        # Letterbox once and turn the square: the same as letterboxing each turned image.
        # Scaled once: turning the scaled square gives the same numbers as scaling the turned one.
        canvas, (ox, oy, sw, sh) = letterbox(rgb, self.size)
        hwc = _normalise(canvas)
        out = []
        for r in (0, 90, 180, 270):
            placed = (ox, oy, sw, sh) if r in (0, 180) else (oy, ox, sh, sw)
            out.append(self._detect_canvas(np.rot90(hwc, -(r // 90) % 4), placed))
        return out

    def landmarks(self, rgb: np.ndarray, face: Face) -> tuple[np.ndarray, float]:
        """468 FaceMesh landmarks (pixels of the crop, only ratios are used) and the mesh's own
        face-presence probability."""
        if self.mesh is None:
            raise RuntimeError("this pack has no face landmark model")
        x = (self.crop(rgb, face).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        pts, flag = self.mesh.run(x)
        return pts.reshape(-1, 3), _sigmoid(float(np.ravel(flag)[-1]))

    def crop(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The landmark model's input: a square 1.5x the face box, mesh_size pixels."""
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = face.box
        cx, cy = (x0 + x1) / 2 * w, (y0 + y1) / 2 * h
        side = max((x1 - x0) * w, (y1 - y0) * h) * self.mesh_roi_scale
        crop = Image.fromarray(rgb).crop(
            (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
        )
        return np.asarray(crop.resize((self.mesh_size, self.mesh_size), Image.Resampling.BILINEAR))

    def smile_vote(self, rgb: np.ndarray, face: Face) -> float | None:
        """P(smile) of the expression model (a network trained on many real faces): its
        "happy" against "neutral", the two expressions a series' frontal views show. The face
        box exactly, padded to a square and then scaled, as face-api does (not `letterbox`,
        which scales first: one open smile, 006_08, then falls below review level); None
        without the model."""
        if self.expression is None or not {"happy", "neutral"} <= set(self.expression_classes):
            return None
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = face.box
        top, left = max(0, round(y0 * h)), max(0, round(x0 * w))
        crop = rgb[top : max(1, round(y1 * h)), left : max(1, round(x1 * w))]
        ch, cw = crop.shape[:2]
        if ch < 8 or cw < 8:
            return None
        side = max(ch, cw)
        square = np.zeros((side, side, 3), np.uint8)
        oy, ox = (side - ch) // 2, (side - cw) // 2
        square[oy : oy + ch, ox : ox + cw] = crop
        n = self.expression_size
        scaled = np.asarray(Image.fromarray(square).resize((n, n), Image.Resampling.BILINEAR), np.float32)
        x = ((scaled - self.expression_mean) / 255.0).transpose(2, 0, 1)[None]
        (probs,) = self.expression.run(np.ascontiguousarray(x, np.float32))
        p = dict(zip(self.expression_classes, np.ravel(probs).tolist(), strict=False))
        return float(p["happy"] / max(p["happy"] + p["neutral"], 1e-9))


def _normalise(canvas: np.ndarray) -> np.ndarray:
    """The detector's input scale: uint8 0..255 -> float32 -1..1 (height, width, channels)."""
    return canvas.astype(np.float32) / 127.5 - 1.0


def rotate(rgb: np.ndarray, clockwise: int) -> np.ndarray:
    """The pixels turned clockwise by 0, 90, 180 or 270 degrees."""
    return np.ascontiguousarray(np.rot90(rgb, -(clockwise // 90) % 4))


def lip_features(landmarks: np.ndarray) -> np.ndarray:
    """[mouth width / eye span, inner-lip opening / mouth width, corner lift / mouth width]."""
    p = landmarks[:, :2]
    a, b = MOUTH_CORNERS
    u, d = INNER_LIPS
    e1, e2 = OUTER_EYE_CORNERS
    width = float(np.hypot(*(p[b] - p[a]))) + 1e-6
    eyes = float(np.hypot(*(p[e2] - p[e1]))) + 1e-6
    opening = float(np.hypot(*(p[d] - p[u])))
    # Positive when the corners sit above the middle of the lips (image y grows downward).
    lift = float((p[u, 1] + p[d, 1]) / 2 - (p[a, 1] + p[b, 1]) / 2)
    return np.array([width / eyes, opening / width, lift / width], np.float32)


def mouth_features(crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """[mouth width / eye span, area between the lips / width^2, teeth shown / width^2] of the
    landmark model's crop (`FaceModels.crop`) and its landmarks. A smile widens the mouth and
    shows teeth: pixels between the lips brighter and greyer than the lips."""
    p = landmarks[:, :2]
    a, b = MOUTH_CORNERS
    e1, e2 = OUTER_EYE_CORNERS
    width = float(np.hypot(*(p[b] - p[a]))) + 1e-6
    eyes = float(np.hypot(*(p[e2] - p[e1]))) + 1e-6
    size = (crop.shape[1], crop.shape[0])

    def mask(ring: tuple[int, ...]) -> np.ndarray:
        im = Image.new("L", size, 0)
        ImageDraw.Draw(im).polygon([(float(p[i, 0]), float(p[i, 1])) for i in ring], fill=1)
        return np.asarray(im).astype(bool)

    inner = mask(INNER_LIPS_RING)
    lips = mask(OUTER_LIPS_RING) & ~inner
    teeth = 0.0
    if inner.any() and lips.any():
        hsv = np.asarray(Image.fromarray(crop).convert("HSV"), np.float32)
        sat, val = hsv[..., 1], hsv[..., 2]
        lip_val, lip_sat = float(np.median(val[lips])), float(np.median(sat[lips]))
        bright = (val[inner] > lip_val * TEETH_BRIGHTER) & (sat[inner] < lip_sat * TEETH_GREYER)
        teeth = float(bright.sum())
    return np.array([width / eyes, float(inner.sum()) / width**2, teeth / width**2], np.float32)
