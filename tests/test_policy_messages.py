"""What a person reads about an uncertain label: the view's meaning beside its code, a
confidence never rounded up to the threshold it missed, and why a source is capped."""

from __future__ import annotations

from pathlib import Path

import pytest

from orthovision_cli.errors import NeedsReview
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.labels.policy import apply_policy, describe


def test_a_confidence_just_below_the_threshold_is_not_shown_as_the_threshold() -> None:
    lab = Label("protocol", "EV15", 0.7996, "local:faces")
    text = describe(lab, 0.8)
    assert "0.79" in text and "0.80 needed" in text
    assert "at 0.80" not in text


def test_a_view_code_is_shown_with_its_meaning() -> None:
    text = describe(Label("protocol", "IV18", 0.7, "local:head:intraoral_view"), 0.8)
    assert "IV18 (Intraoral, Left Buccal Segment" in text


def test_a_capped_source_says_why() -> None:
    note = "a buccal side is capped at 0.75 (a mirror swaps sides): a person confirms it"
    text = describe(Label("protocol", "IV01", 0.75, "local:head", detail={"note": note}), 0.8)
    assert text.endswith(note)


def test_the_review_message_names_each_uncertain_tag_once() -> None:
    labels = (
        Labels()
        .with_label(Label("modality", "DX", 0.5, "local"))
        .with_label(Label("protocol", "EV15", 0.79999, "local"))
    )
    with pytest.raises(NeedsReview) as caught:
        apply_policy(labels, 0.8, "review", Path("x.jpg"))
    msg = caught.value.message
    assert msg.startswith("not sure enough: modality=DX")
    assert msg.count("protocol=") == 1 and "at 0.79" in msg
