"""One image's classification in progress, and the model inputs every signal makes the same way.

`Work` carries what each signal found (the colour rule's kind, the faces, the MobileNetV2
features and their turned looks) from the looking to the labelling. `to_feature_input` is the
features model's input for the classifier, `orthovision train` and the pack's tools alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ...errors import InputError
from . import rules
from .body_pose import BodyPose
from .faces import Face

# The preview every signal looks at (longer side, pixels).
PREVIEW_SIDE = 384


@dataclass
class Work:
    image: Any
    rgb: np.ndarray | None = None
    error: InputError | None = None
    kind: str = rules.UNSURE
    kind_conf: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)
    faces: list[Face] = field(default_factory=list)
    face_conf: float = 0.0
    rotation: int = 0
    mesh_flag: float = 0.0
    lips: np.ndarray | None = None  # faces.lip_features (smile heads with input "lips")
    mouth: np.ndarray | None = None  # faces.mouth_features (smile heads with input "mouth")
    smile_vote: float | None = None  # the expression model's P(smile) (faces.smile_vote)
    mesh_yaw: float | None = None  # degrees, from FaceMesh's 3D landmarks
    body: BodyPose | None = None  # BlazePose keypoints, for turned faces and missed ones
    body_rotation: int = 0  # the clockwise turn the body pose was found at
    features: np.ndarray | None = None
    size: tuple[int, int] | None = None  # stored pixel size, from the file header
    dpi: float | None = None
    mode: str | None = None  # stored pixel mode (Pillow's: "L", "RGB", "I;16", ...)
    grey_p: float | None = None  # the grey_photo head's P(greyscale), when it was asked
    greyscale: bool = False  # a photograph in shades of grey (a face found on a grey picture)
    looks: list[np.ndarray] | None = None  # features of the picture turned 0, 90, 180, 270
    light_scan: bool = False  # a drawing's white and mid-grey shares, but no strokes (rules)


# A face both the detector and the landmark model are sure of (`Work.face_conf`; 0.75 otherwise).
SURE_FACE = 0.95


def to_feature_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """(3, size, size) float32 in 0..255: the whole picture squashed to a square (views are told
    by their layout, which a centre crop would cut)."""
    im = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, np.float32).transpose(2, 0, 1)


def read_header(path: Any) -> tuple[tuple[int, int] | None, float | None, str | None]:
    """Stored pixel size, resolution (dpi) and pixel mode from the file header; Nones if
    unknown."""
    if path is None:
        return None, None, None
    try:
        with Image.open(path) as im:
            dpi = im.info.get("dpi")
            res = float(dpi[0]) if dpi and float(dpi[0]) > 0 else None
            return (int(im.size[0]), int(im.size[1])), res, str(im.mode)
    except (OSError, ValueError, TypeError, IndexError, SyntaxError):
        return None, None, None
