"""Local classification with the ONNX models of a model pack (no network).

`load_pack(path=None)` returns a `LocalClassifier` (`name`, `classify`, `classify_many`);
`needs_review(labels, min_confidence)` lists the tags too uncertain to write.
"""

from __future__ import annotations

from .classifier import LocalClassifier, load_pack
from .packs import ENV_VAR, Pack, default_pack_path, read_pack
from .policy import DEFAULT_MIN_CONFIDENCE, ON_UNCERTAIN, needs_review

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "ENV_VAR",
    "ON_UNCERTAIN",
    "LocalClassifier",
    "Pack",
    "default_pack_path",
    "load_pack",
    "needs_review",
    "read_pack",
]
