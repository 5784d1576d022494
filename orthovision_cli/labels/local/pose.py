"""Head pose of a face photograph: frontal, three-quarter or profile, and to which side.

BlazeFace's keypoints give a yaw ratio: the nose tip's offset from the mid-point of the two
tragions, in tragion spans (`faces.Face.yaw`). No openly licensed profile or three-quarter
photograph exists to fit the thresholds on, so the ratio is turned into degrees by geometry:
`models/tools/measure_pose.py` takes the 3D FaceMesh landmarks of the open frontal faces, turns
them about the vertical axis by known angles, projects them and measures the same ratio (nose
tip, face contour at the tragions). The mean ratio per angle is `RATIO_AT_DEGREES` below.

ADA-1100 takes the three-quarter views at 45 degrees and the profiles at 90: a face is called
frontal below 22.5 degrees, three-quarter up to 67.5, profile beyond (the mid-points). The view's
confidence falls near a boundary: within `MARGIN_DEGREES` of one, it stays below review level.
"""

from __future__ import annotations

import numpy as np

# (degrees, mean |yaw ratio|) measured by models/tools/measure_pose.py on 64 open frontal faces.
RATIO_AT_DEGREES: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (15.0, 0.186),
    (22.5, 0.289),
    (30.0, 0.403),
    (45.0, 0.696),
    (60.0, 1.201),
    (67.5, 1.668),
    (75.0, 2.570),
)
FRONTAL_MAX_DEGREES = 22.5
PROFILE_MIN_DEGREES = 67.5
MARGIN_DEGREES = 8.0


def degrees(yaw_ratio: float) -> float:
    """|yaw| in degrees from the keypoint ratio (piecewise linear in the measured table)."""
    deg = np.array([d for d, _ in RATIO_AT_DEGREES])
    ratio = np.array([r for _, r in RATIO_AT_DEGREES])
    return float(np.interp(abs(yaw_ratio), ratio, deg, right=90.0))


def name_of(deg: float) -> str:
    d = abs(deg)
    if d < FRONTAL_MAX_DEGREES:
        return "frontal"
    return "three-quarter" if d < PROFILE_MIN_DEGREES else "profile"


def mesh_degrees(landmarks: np.ndarray) -> float:
    """Yaw in degrees from FaceMesh's own 3D landmarks: the direction of the line between the
    face contour points at tragion height in the horizontal (x, z) plane; about 0 for a frontal
    face (-4 to +6 degrees on the open faces), positive when the face turns toward the image's
    right, like the keypoint ratio. A second, independent estimate: `pose` calls the view
    doubtful when the two disagree."""
    a, b = landmarks[MESH_CONTOUR[0]], landmarks[MESH_CONTOUR[1]]
    return float(np.degrees(np.arctan2(b[2] - a[2], b[0] - a[0])))


MESH_CONTOUR = (234, 454)
DISAGREE_CONFIDENCE = 0.6


def pose(yaw_ratio: float, mesh_deg: float | None = None) -> tuple[str, float]:
    """('frontal' | 'three-quarter' | 'profile', how sure the geometry is: 1.0 far from a
    boundary, down to 0.5 on it, at most DISAGREE_CONFIDENCE when the mesh's own yaw puts the
    face in another class)."""
    d = degrees(yaw_ratio)
    if d < FRONTAL_MAX_DEGREES:
        name = "frontal"
        margin = FRONTAL_MAX_DEGREES - d
    elif d < PROFILE_MIN_DEGREES:
        name = "three-quarter"
        margin = min(d - FRONTAL_MAX_DEGREES, PROFILE_MIN_DEGREES - d)
    else:
        name = "profile"
        margin = d - PROFILE_MIN_DEGREES
    conf = 0.5 + 0.5 * min(1.0, margin / MARGIN_DEGREES)
    if mesh_deg is not None and name_of(mesh_deg) != name:
        conf = min(conf, DISAGREE_CONFIDENCE)
    return name, conf


# --- BlazePose (labels.local.body_pose): a yaw that holds up to a full profile ------------------

# The body pose is looked for when the face looks turned (either FaceMesh estimate at least this
# many degrees) or no face was found; a frontal face never costs the two pose runs.
POSE_CHECK_DEGREES = 15.0
BODY_MARGIN_DEGREES = 10.0
# The nose tip this far (in eye-to-ear spans) beside the eyes' mid-point says which way the face
# looks; nearer, it says nothing (BlazePose keypoints of a small head move by about 0.1).
NOSE_SIDE_MIN = 0.15


def body_view(
    body_yaw: float, cues: dict[str, float], face_deg: float | None
) -> tuple[str, bool, float, list[str]]:
    """(view, faces the image's right?, confidence 0.5-1.0, disagreeing cues) from BlazePose's
    world yaw and what the picture shows. `face_deg`: BlazeFace's signed keypoint yaw in degrees
    when a face was found (it saturates near 60, but a face it calls frontal is no profile and
    the side it sees must be the side BlazePose sees).

    BlazePose's keypoint visibility stays near 1.0 for the far eye and ear of a turned head (it
    was trained for "in the picture", not "hidden behind the face"), so it is reported in the
    label's detail and not used."""
    d = abs(body_yaw)
    name = name_of(d)
    if name == "frontal":
        margin = FRONTAL_MAX_DEGREES - d
    elif name == "three-quarter":
        margin = min(d - FRONTAL_MAX_DEGREES, PROFILE_MIN_DEGREES - d)
    else:
        margin = d - PROFILE_MIN_DEGREES
    conf = 0.5 + 0.5 * min(1.0, margin / BODY_MARGIN_DEGREES)
    right = body_yaw > 0
    doubts = []
    nose = cues["nose_offset"]
    if name != "frontal" and abs(nose) >= NOSE_SIDE_MIN and (nose > 0) != right:
        doubts.append("nose on the other side")
    if face_deg is not None:
        if name == "profile" and abs(face_deg) < FRONTAL_MAX_DEGREES:
            doubts.append("face detector: frontal")
        if name != "frontal" and abs(face_deg) >= POSE_CHECK_DEGREES and (face_deg > 0) != right:
            doubts.append("face detector: other side")
        if name == "frontal" and abs(face_deg) >= FRONTAL_MAX_DEGREES:
            doubts.append("face detector: turned")
    if doubts:
        conf = min(conf, DISAGREE_CONFIDENCE)
    return name, right, conf, doubts
