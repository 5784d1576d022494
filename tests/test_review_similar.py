"""Look-alikes and the order of questions (review/similar.py) on hand-made profiles: each
condition (proposals, folder or device, nearness, known features) checked on its own; a round of
teaching that cannot learn (review/rescore.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from testdata import DATA

from orthovision_cli.decisions import Decision, DecisionBook, clean
from orthovision_cli.inputs.source import content_hash
from orthovision_cli.review.items import ReviewItem
from orthovision_cli.review.rescore import Rescorer
from orthovision_cli.review.similar import (
    NEAR,
    Profile,
    look_alikes,
    normalised,
    proposed_values,
    settle_order,
)

CHEST = ("DX", "CHEST_PA", "CHEST", "0")
FACE = ("XC", "EV15", "HEAD", "0")


def _vec(angle_deg: float) -> np.ndarray:
    """A unit vector at `angle_deg` from (1, 0, 0...): cosine to it is cos(angle)."""
    a = np.radians(angle_deg)
    v = np.zeros(8, np.float32)
    v[0], v[1] = np.cos(a), np.sin(a)
    return normalised(v)


def _p(
    i: int, angle: float | None, proposed: tuple[str, ...] = CHEST, folder: str = "/in/a", device: str = ""
) -> Profile:
    return Profile(i, f"f{i:02d}", proposed, folder, device, None if angle is None else _vec(angle))


def test_look_alikes_need_every_condition() -> None:
    far = float(np.degrees(np.arccos(NEAR))) + 5  # just beyond NEAR
    ps = [
        _p(0, 0),
        _p(1, 10),  # near, same kind: yes
        _p(2, 5, FACE),  # other proposals: no
        _p(3, 3, folder="/in/b"),  # other folder, no device: no
        _p(4, 3, folder="/in/b", device="Nikon D90"),  # other folder, other device: no
        _p(5, far),  # too far: no
        _p(6, None),  # features unknown: never assumed near
        _p(7, 2),  # nearest: first
    ]
    assert look_alikes(ps, 0) == [7, 1]
    assert look_alikes(ps, 0, exclude=[7]) == [1]
    # Another folder of the same camera counts.
    ps[0].device = ps[4].device = "Nikon D90"
    assert look_alikes(ps, 0) == [7, 4, 1]
    # Nothing for a file whose own features are unknown, nor for an unknown id.
    assert look_alikes(ps, 6) == [] and look_alikes(ps, 99) == []
    # Symmetric: 1 sees 0 as 0 sees 1.
    assert 0 in look_alikes(ps, 1)


def test_settle_order_asks_the_largest_group_first_one_per_group() -> None:
    ps = [
        _p(0, 60),  # alone (far from the rest)
        _p(1, 0),  # group A: 1..4 near each other
        _p(2, 2),
        _p(3, 4),
        _p(4, 6),
        _p(5, 0, FACE),  # group B: two faces
        _p(6, 3, FACE),
        _p(7, None),  # no features yet: a group of its own
    ]
    order = settle_order(ps, [p.id for p in ps])
    assert order[0][0] in (1, 2, 3, 4) and sorted(order[0][1] + [order[0][0]]) == [1, 2, 3, 4]
    assert order[1][0] in (5, 6) and len(order[1][1]) == 1
    assert sorted(i for i, _ in order[2:]) == [0, 7] and all(g == [] for _, g in order[2:])
    asked = [i for i, _ in order]
    assert len(asked) == len(set(asked)) == 4  # one per group, every file in exactly one group
    # Decided files are neither asked nor counted as settled.
    order = settle_order(ps, [0, 1, 2, 5, 7])
    assert (order[0][0], sorted(order[0][1])) in ((1, [2]), (2, [1]))


def test_settle_order_ties_go_by_name() -> None:
    ps = [_p(3, 0, folder="/x"), _p(1, 0, folder="/y"), _p(2, 0, folder="/z")]
    assert [i for i, _ in settle_order(ps, [1, 2, 3])] == [1, 2, 3]


def test_proposed_values_from_review_labels() -> None:
    labels = {
        "modality": {"value": "DX", "confidence": 0.75},
        "protocol": None,
        "body_part": {"value": None, "confidence": 0.0},
        "orientation": {"value": "90"},
    }
    assert proposed_values(labels) == ("DX", "", "", "90")


def test_a_round_that_cannot_learn_says_so_and_settles_nothing(tmp_path: Path) -> None:
    """Five decided files that are gone by the time the page learns (moved away) teach
    nothing: the page is told why, nothing leaves the list, no taught pack is left behind, and
    the next round waits for five more decisions."""
    faces = []
    for src in sorted((DATA / "photos" / "faces_london" / "rest").glob("*.jpg"))[:6]:
        faces.append(tmp_path / src.name)
        shutil.copy(src, faces[-1])
    items = [ReviewItem(i, str(p), p.name, "needs-review", "", content_hash(p)) for i, p in enumerate(faces)]
    book = DecisionBook(tmp_path)
    book.save(
        [clean(Decision(it.input, it.sha256, protocol="EV15", decided_tags="protocol")) for it in items[:5]]
    )
    for p in faces[:5]:
        p.unlink()
    r = Rescorer(tmp_path, book, lambda: items)
    assert r.note()
    r.wait(120)
    status = r.status()
    assert status["rounds"] == 0 and status["settled"] == [] and status["taught"] == 5
    assert "not learnt yet" in status["message"] and "nothing could be taught" in status["message"]
    assert not (tmp_path / ".orthovision" / "taught-pack").exists()
    assert not r.note()  # no new decision since
