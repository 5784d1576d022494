"""File and folder name hints in several languages, and the review policy."""

from __future__ import annotations

import pytest

from orthovision_cli.labels.local.hints import hint_labels
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.labels.policy import uncertain_tags


@pytest.mark.parametrize(
    ("path", "protocol"),
    [
        ("patient1/EV01.jpg", "EV01"),
        ("export/ev-19_smile.JPG", "EV19"),
        ("IV24/IMG_0045.jpg", "IV24"),
        ("Patient/Profil rechts.jpg", "EV01"),
        ("Patient/perfil izquierdo sonrisa.jpg", "EV26"),
        ("x/profile_left.jpg", "EV22"),
        ("x/3-4 droite.jpg", "EV08"),
        ("x/Lächeln.jpg", "EV19"),
        ("x/sourire.jpg", "EV19"),
        ("x/OPG 2021.tif", "PANORAMIC"),
        ("x/panorámica.jpg", "PANORAMIC"),
        ("x/FRS lateral.tif", "CEPH_LATERAL"),
        ("x/téléradiographie de profil.tif", "CEPH_LATERAL"),
        ("x/ceph PA.tif", "CEPH_PA"),
        ("x/Bissflügel links.tif", "BITEWING"),
    ],
)
def test_protocol_from_names(path: str, protocol: str) -> None:
    assert hint_labels(path).value("protocol") == protocol


@pytest.mark.parametrize("path", ["IMG_0045.jpg", "DSC00123.JPG", "scan 3.tif", "retake.jpg"])
def test_plain_camera_names_say_nothing(path: str) -> None:
    assert list(hint_labels(path)) == []


def test_intraoral_words_give_body_part_not_a_view() -> None:
    labels = hint_labels("okklusal OK.jpg")
    assert labels.value("body_part") == "MOUTH"
    assert labels.value("protocol") is None


def test_ceph_without_projection_stays_below_review_level() -> None:
    labels = hint_labels("ceph.tif")
    assert labels.protocol is not None and labels.protocol.confidence < 0.8
    assert "protocol" in uncertain_tags(labels, 0.8)


def test_uncertain_tags_are_known_labels_below_the_threshold() -> None:
    """The one policy (labels/policy.py): an unknown tag claims nothing, so it is not uncertain."""
    labels = Labels(
        modality=Label("modality", "XC", 0.99, "t"),
        protocol=Label("protocol", "EV15", 0.6, "t"),
        body_part=Label("body_part", None, 0.0, "t"),
    )
    assert uncertain_tags(labels, 0.8) == ["protocol"]
    assert uncertain_tags(labels, 0.5, tags=("modality", "protocol")) == []
