"""Head pose from BlazePose on real photographs (issue 28): a turned real face and its mirror
image, frontal faces that must never read as a profile, and a face the face detector misses.

No openly licensed real profile or 45-degree orthodontic photograph exists (../shared/data's
README): the turned face here is the CC0 cameraman photograph (a man at his camera, his face
turned toward the image's right), the frontal ones the London and Canada sets and the public
domain astronaut portrait (tests/data/NOTICE.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from testdata import DATA

from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.labels.local import load_pack
from orthovision_cli.labels.local import pose as head_pose
from orthovision_cli.labels.local.body_pose import BodyPose, PoseModels
from orthovision_cli.labels.local.classifier import LocalClassifier
from orthovision_cli.labels.local.faces import FaceModels, mouth_features
from orthovision_cli.labels.local.packs import read_pack
from orthovision_cli.labels.local.runner import OnnxModel
from orthovision_cli.labels.local.work import PREVIEW_SIDE, Work

PROFILES = {"EV01", "EV05", "EV22", "EV26"}
FRONTAL = sorted((DATA / "photos" / "faces_london").glob("*/*.jpg")) + sorted(
    (DATA / "photos" / "faces_canada").glob("*.jpg")
)
ASTRONAUT = DATA / "people" / "astronaut_pd.jpg"
CAMERAMAN = DATA / "people" / "cameraman_cc0.png"


@pytest.fixture(scope="module")
def clf() -> LocalClassifier:
    return load_pack()


@pytest.fixture(scope="module")
def pose_models() -> PoseModels:
    pack = read_pack()
    det, lm = pack.model("pose_detector"), pack.model("pose_landmarks")
    assert det and lm
    return PoseModels(
        OnnxModel(pack.path_of(det["file"]), det["input"]),
        OnnxModel(pack.path_of(lm["file"]), lm["input"]),
        lm,
    )


def body_of(models: PoseModels, rgb: np.ndarray) -> BodyPose:
    found = models.detect(rgb)
    assert found is not None
    return models.run(rgb, models.roi_from_detection(rgb, found[1]), found[0])


def rgb_of(path: Path, side: int = 384) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    im.thumbnail((side, side))
    return np.asarray(im)


def test_a_real_turned_face_reads_turned_and_its_mirror_flips_the_side(pose_models: PoseModels) -> None:
    rgb = rgb_of(CAMERAMAN)
    for picture, right in ((rgb, True), (np.ascontiguousarray(rgb[:, ::-1]), False)):
        body = body_of(pose_models, picture)
        assert body.presence > 0.5
        # Facing the image's right is positive: the right-profile family (EV01 / EV08).
        assert (body.yaw > 0) == right, body.yaw
        assert abs(body.yaw) > head_pose.FRONTAL_MAX_DEGREES, body.yaw
        name, facing_right, _, doubts = head_pose.body_view(body.yaw, body.cues(), None)
        assert name != "frontal" and facing_right == right and not doubts


def test_frontal_faces_read_within_ten_degrees(pose_models: PoseModels) -> None:
    for path in [*FRONTAL[::3], ASTRONAUT]:
        rgb = rgb_of(path)
        for picture in (rgb, np.ascontiguousarray(rgb[:, ::-1])):
            body = body_of(pose_models, picture)
            assert abs(body.yaw) <= 10.0, (path.name, body.yaw)
            assert head_pose.body_view(body.yaw, body.cues(), 0.0)[0] == "frontal"


def test_a_real_frontal_face_is_never_called_a_profile(clf: LocalClassifier, tmp_path: Path) -> None:
    paths = [*FRONTAL, ASTRONAUT]
    mirrored = []
    for p in paths:
        m = tmp_path / f"mirror_{p.parent.name}_{p.name}"
        Image.open(p).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(m, quality=92)
        mirrored.append(m)
    all_paths = paths + mirrored
    out = clf.classify_many([SourceImage(p, rel=f"img{i:03d}.jpg") for i, p in enumerate(all_paths)])
    for p, labels in zip(all_paths, out, strict=True):
        protocol = labels.get("protocol")
        assert protocol is not None and protocol.value not in PROFILES, (p.name, labels.as_dict())
        assert protocol.detail.get("pose") == "frontal", (p.name, protocol.detail)


def test_body_view_sides_boundaries_and_disagreement() -> None:
    cues = {"nose_offset": 0.0}
    # The subject faces the observer's right (yaw > 0): right profile (EV01 family).
    assert head_pose.body_view(88.0, cues, None)[:2] == ("profile", True)
    assert head_pose.body_view(-88.0, cues, None)[:2] == ("profile", False)
    assert head_pose.body_view(45.0, cues, 50.0)[:3] == ("three-quarter", True, 1.0)
    # Between the two families: below review level.
    assert head_pose.body_view(66.0, cues, None)[2] < 0.6
    assert head_pose.body_view(70.0, cues, None)[2] < 0.75
    # Cues that disagree: the face detector sees a frontal face, or the other side; the nose
    # stands on the other side of the eyes.
    for yaw, face_deg, nose in ((85.0, 5.0, 0.0), (85.0, -55.0, 0.0), (85.0, None, -0.4)):
        _, _, conf, doubts = head_pose.body_view(yaw, {"nose_offset": nose}, face_deg)
        assert doubts and conf <= head_pose.DISAGREE_CONFIDENCE, (yaw, face_deg, nose)


def test_a_face_the_detector_misses_is_still_looked_for(tmp_path: Path) -> None:
    # Fault injected: a copy of the pack whose face detector accepts no face at all, so only
    # BlazePose can find the astronaut. Every label it gives is proposed, none written.
    src = read_pack().root
    pack = tmp_path / "pack"
    shutil.copytree(src, pack, ignore=shutil.ignore_patterns("tools", "__pycache__"))
    manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    manifest["rules"]["faces"]["min_score"] = 1.01
    (pack / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    clf = load_pack(pack)
    labels = clf.classify(SourceImage(ASTRONAUT, rel="img.jpg"))
    assert labels.value("body_part") == "HEAD"  # the intraoral head says so too, on its own
    assert labels.value("orientation") == "0"
    protocol = labels.get("protocol")
    assert protocol is not None and protocol.detail.get("found_by") == "BlazePose"
    assert protocol.detail.get("pose") == "frontal"
    for tag in ("orientation", "protocol"):
        lab = labels.get(tag)
        assert lab is not None and lab.confidence <= 0.75, (tag, lab)
    # Without the pose models the same face stays unknown.
    del manifest["models"]["pose_detector"], manifest["models"]["pose_landmarks"]
    (pack / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert load_pack(pack).classify(SourceImage(ASTRONAUT, rel="img.jpg")).value("protocol") is None


# The one open face both the smile head and the expression model read wrong, together and
# sure: person 005's faint closed-lip smile, written as at rest (docs/limitations.md).
KNOWN_SURE_MISTAKES = {"005_08.jpg"}


def test_rest_and_smile_on_the_open_pairs(clf: LocalClassifier) -> None:
    # In-sample for the smile head (it learnt these people; its leave-one-person-out figure is
    # models/tools/fit_smile.py's: 22/24 pairs, 62/64 with the Canada faces at rest); the
    # expression model never saw them (it is used as shipped).
    london = sorted((DATA / "photos" / "faces_london").glob("*/*.jpg"))
    out = clf.classify_many([SourceImage(p, rel=f"img{i:03d}.jpg") for i, p in enumerate(london)])
    right = sure = 0
    for p, labels in zip(london, out, strict=True):
        want = "EV19" if p.parent.name == "smile" else "EV15"
        protocol = labels.get("protocol")
        assert protocol is not None
        right += protocol.value == want
        if protocol.confidence >= 0.8:  # written without review: must be right
            sure += 1
            assert protocol.value == want or p.name in KNOWN_SURE_MISTAKES, (p.name, protocol)
    assert right >= 22, right
    # With the expression model's vote most faces need no person (the smile head alone: 1 of 24;
    # 22 of 24 with the vote joined as the fusion rule says: 024_08 and 082_08 go to a person).
    assert sure >= 21, sure


def test_the_expression_vote_on_real_faces(clf: LocalClassifier) -> None:
    """face-api's expression model (as shipped, never fitted here) reads the open faces at rest
    as neutral and most smiles as happy; where it and the smile head disagree, a person
    decides (0.5)."""
    assert clf.faces is not None and clf.faces.expression is not None
    votes: dict[str, list[float]] = {"rest": [], "smile": []}
    for p in sorted((DATA / "photos" / "faces_london").glob("*/*.jpg")):
        rgb = SourceImage(p, rel=p.name).preview(PREVIEW_SIDE)
        face = clf.faces.detect(rgb)
        vote = clf.faces.smile_vote(rgb, face)
        assert vote is not None
        votes[p.parent.name].append(vote)
    assert max(votes["rest"]) < 0.1, votes["rest"]
    assert sum(v > 0.8 for v in votes["smile"]) >= 8, votes["smile"]
    mirrored = SourceImage(DATA / "photos/faces_london/smile/008_08.jpg", rel="x.jpg").preview(PREVIEW_SIDE)[
        :, ::-1
    ]
    face = clf.faces.detect(np.ascontiguousarray(mirrored))
    assert (clf.faces.smile_vote(np.ascontiguousarray(mirrored), face) or 0) > 0.8  # a smile mirrored is one


def test_a_disagreeing_vote_sends_the_smile_to_a_person(
    clf: LocalClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Work(image=None)
    # Each leaning clearly its own way: 0.5. The same way: the surer, the vote capped. One
    # leaning neither way (the head at 0.55): the odds multiplied, so the clear vote decides
    # but the head's lean still moves it (0.55 * 0.03 / (0.45 * 0.97) in odds), within the cap.
    odds = 0.55 * 0.03 / (0.45 * 0.97)
    cases = [
        (0.3, 0.99, 0.5),
        (0.7, 0.2, 0.5),
        (0.7, 0.99, 0.97),
        (0.3, 0.01, 0.03),
        (0.95, 0.6, 0.95),
        (0.55, 0.001, odds / (1 + odds)),
        (0.45, 0.999, 1 - odds / (1 + odds)),
        (0.62, 0.42, 0.62 * 0.42 / (0.62 * 0.42 + 0.38 * 0.58)),
    ]
    for head_p, vote, want in cases:
        w.smile_vote = vote

        def head(_w: Work, p: float = head_p) -> float:
            return p

        monkeypatch.setattr(clf.bank, "_smile_head", head)
        assert clf.bank.smile_probability(w) == pytest.approx(want), (head_p, vote)


def test_teeth_are_seen_between_the_lips_of_smiles_only() -> None:
    pack = read_pack()
    det, mesh = pack.model("face_detector"), pack.model("face_mesh")
    assert det and mesh
    faces = FaceModels(
        OnnxModel(pack.path_of(det["file"]), det["input"]),
        det,
        OnnxModel(pack.path_of(mesh["file"]), mesh["input"]),
        mesh,
    )
    teeth: dict[str, list[float]] = {"rest": [], "smile": []}
    for p in sorted((DATA / "photos" / "faces_london").glob("*/*.jpg")):
        rgb = rgb_of(p)
        face = faces.detect(rgb)
        pts, _ = faces.landmarks(rgb, face)
        teeth[p.parent.name].append(float(mouth_features(faces.crop(rgb, face), pts)[2]))
    assert max(teeth["rest"]) < 0.005, teeth["rest"]
    assert sum(t > 0.01 for t in teeth["smile"]) >= 4, teeth["smile"]
