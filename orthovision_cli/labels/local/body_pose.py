"""Head pose from MediaPipe BlazePose (detector + 33-keypoint landmark model), run as ONNX.

FaceMesh was trained on faces that look at the camera: its yaw saturates near 60 degrees and
BlazeFace misses many full profiles. BlazePose was trained on people in every pose, profiles
included; its keypoints name the nose, both eyes, both ears and the mouth corners, each with a
visibility, and its world landmarks place them in 3D (metres). Two estimates come from it:

- `yaw`: the direction of the ear-to-ear line in the horizontal plane of the world landmarks
  (0 frontal, +90 a profile facing the image's right, the sign of `faces.Face.yaw`);
- `cues`: what the picture shows: the share of the far eye and ear that is visible and where the
  nose tip sits against the eyes (`nose_offset`: nose minus eye mid-point, in eye-to-ear spans).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .runner import OnnxModel

# BlazePose keypoints ("left" is the subject's left).
NOSE = 0
LEFT_EYE, RIGHT_EYE = 2, 5
LEFT_EAR, RIGHT_EAR = 7, 8
MOUTH_LEFT, MOUTH_RIGHT = 9, 10
DET_SIZE = 224
LM_SIZE = 256


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -100.0, 100.0)))


def ssd_anchors(size: int = DET_SIZE, strides: tuple[int, ...] = (8, 16, 32, 32, 32)) -> np.ndarray:
    """Anchor centres of the pose detector (MediaPipe's SSD anchors with fixed size: two per
    cell and layer, layers of equal stride share the grid)."""
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = -(-size // strides[i])
        ys, xs = np.mgrid[0:n, 0:n]
        cells = np.stack([(xs + 0.5) / n, (ys + 0.5) / n], -1).reshape(-1, 1, 2)
        out.append(np.repeat(cells, 2 * (j - i), axis=1).reshape(-1, 2))
        i = j
    return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class BodyPose:
    score: float  # the detector's person score (or the face box's when the ROI came from it)
    presence: float  # the landmark model's pose presence
    points: np.ndarray  # (33, 2) image-normalised x, y
    visibility: np.ndarray  # (33,)
    world: np.ndarray  # (33, 3) metres

    @property
    def yaw(self) -> float:
        """Degrees: the ear line's direction in the world landmarks' x-z plane; positive when
        the face turns toward the image's right."""
        d = self.world[LEFT_EAR] - self.world[RIGHT_EAR]
        return float(math.degrees(math.atan2(float(d[2]), float(d[0]))))

    def cues(self) -> dict[str, float]:
        """Visibility of each side's eye and ear, and the nose's offset from the eye mid-point
        in ear-to-eye spans (large on a profile, about 0 frontal), signed like `yaw`."""
        p, v = self.points, self.visibility
        eyes_mid = (p[LEFT_EYE] + p[RIGHT_EYE]) / 2
        ears_mid = (p[LEFT_EAR] + p[RIGHT_EAR]) / 2
        span = float(np.hypot(*(eyes_mid - ears_mid))) + float(np.hypot(*(p[LEFT_EYE] - p[RIGHT_EYE]))) / 2
        return {
            "left_eye": float(v[LEFT_EYE]),
            "right_eye": float(v[RIGHT_EYE]),
            "left_ear": float(v[LEFT_EAR]),
            "right_ear": float(v[RIGHT_EAR]),
            "nose": float(v[NOSE]),
            "nose_offset": float((p[NOSE][0] - eyes_mid[0]) / (span + 1e-6)),
        }


class PoseModels:
    def __init__(self, detector: OnnxModel | None, landmarks: OnnxModel, spec: dict[str, Any]):
        self.detector = detector
        self.landmarks = landmarks
        self.anchors = ssd_anchors()
        self.roi_scale = float(spec.get("roi_scale", 1.25))

    def detect(self, rgb: np.ndarray) -> tuple[float, np.ndarray] | None:
        """(person score, (4, 2) keypoints in image-normalised coordinates: hip centre, body
        circle point, shoulder centre, upper-body circle point) of the best detection."""
        if self.detector is None:
            return None
        h, w = rgb.shape[:2]
        s = DET_SIZE / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        canvas = np.zeros((DET_SIZE, DET_SIZE, 3), np.float32)
        ox, oy = (DET_SIZE - nw) // 2, (DET_SIZE - nh) // 2
        small = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BILINEAR), np.float32)
        canvas[oy : oy + nh, ox : ox + nw] = small / 127.5 - 1.0
        reg, cls = self.detector.run(np.ascontiguousarray(canvas.transpose(2, 0, 1))[None])
        i = int(np.argmax(cls[0, :, 0]))
        score = float(_sigmoid(cls[0, i, 0]))
        kp = reg[0, i, 4:12].reshape(4, 2) / DET_SIZE + self.anchors[i]
        kp = (kp * DET_SIZE - np.array([ox, oy])) / np.array([nw, nh])
        return score, kp.astype(np.float32)

    def roi_from_detection(self, rgb: np.ndarray, kp: np.ndarray) -> tuple[float, float, float, float]:
        """(centre x, centre y, side, rotation radians) in pixels: MediaPipe's alignment of the
        hip centre to the body circle point, turned upright, 1.25 times the circle."""
        h, w = rgb.shape[:2]
        px = kp * np.array([w, h])
        c, e = px[0], px[1]
        side = 2.0 * float(np.hypot(*(e - c))) * self.roi_scale
        rot = math.pi / 2 - math.atan2(-(e[1] - c[1]), e[0] - c[0])
        rot = rot - 2 * math.pi * math.floor((rot + math.pi) / (2 * math.pi))
        return float(c[0]), float(c[1]), side, rot

    def roi_from_face(
        self, rgb: np.ndarray, box: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        """A head-and-shoulders ROI around a face box (normalised x0, y0, x1, y1): the head at
        the size BlazePose sees it in an upper-body crop."""
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = box
        fw, fh = (x1 - x0) * w, (y1 - y0) * h
        side = 4.0 * max(fw, fh)
        return (x0 + x1) / 2 * w, (y0 + y1) / 2 * h + 1.0 * max(fw, fh), side, 0.0

    def run(self, rgb: np.ndarray, roi: tuple[float, float, float, float], score: float) -> BodyPose:
        cx, cy, side, rot = roi
        cos, sin = math.cos(rot), math.sin(rot)
        k = side / LM_SIZE
        # Output pixel (u, v) of the crop -> input pixel: centre + R(rot) * ((u, v) - half) * k.
        a, b = cos * k, -sin * k
        d, e = sin * k, cos * k
        half = LM_SIZE / 2
        data = (a, b, cx - a * half - b * half, d, e, cy - d * half - e * half)
        crop = Image.fromarray(rgb).transform(
            (LM_SIZE, LM_SIZE), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR
        )
        x = (np.asarray(crop, np.float32) / 255.0).transpose(2, 0, 1)[None]
        lm, flag, world = self.landmarks.run(np.ascontiguousarray(x))
        pts = lm.reshape(-1, 5)[:33]
        u, v = pts[:, 0], pts[:, 1]
        ix = a * u + b * v + data[2]
        iy = d * u + e * v + data[5]
        h, w = rgb.shape[:2]
        return BodyPose(
            score=score,
            presence=float(np.ravel(flag)[0]),
            points=np.stack([ix / w, iy / h], 1).astype(np.float32),
            visibility=_sigmoid(pts[:, 3]).astype(np.float32),
            world=world.reshape(-1, 3)[:33].astype(np.float32),
        )
