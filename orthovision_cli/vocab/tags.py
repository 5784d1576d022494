"""The four tags a classifier labels, and every spelling under which a user or a service names
one (IG names, DICOM keywords, tag numbers)."""

from __future__ import annotations

from typing import Literal

Tag = Literal["modality", "protocol", "body_part", "orientation"]
TAGS: tuple[Tag, ...] = ("modality", "protocol", "body_part", "orientation")

# The spellings under which a tag is known: IG names, DICOM keywords and tag numbers.
TAG_ALIASES: dict[str, Tag] = {
    "modality": "modality",
    "0008,0060": "modality",
    "protocol": "protocol",
    "protocolname": "protocol",
    "0018,1030": "protocol",
    "view": "protocol",
    "body-part": "body_part",
    "body_part": "body_part",
    "bodypart": "body_part",
    "bodypartexamined": "body_part",
    "0018,0015": "body_part",
    "orientation": "orientation",
    "patientorientation": "orientation",
    "0020,0020": "orientation",
}


def normalise_tag(name: str) -> Tag | None:
    """Map `Modality`, `modality`, `0008,0060`, `(0008,0060)` ... onto one tag, or None."""
    key = name.strip().strip("()").replace(" ", "").lower()
    return TAG_ALIASES.get(key)
