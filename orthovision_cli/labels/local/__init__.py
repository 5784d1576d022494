"""Local classification with the ONNX models of a model pack (no network).

`load_pack(path=None)` returns a `LocalClassifier` (`name`, `classify`, `classify_many`). Which
labels are too uncertain to write is the one policy's call (`labels/policy.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .packs import ENV_VAR, Pack, default_pack_path, read_pack

if TYPE_CHECKING:
    from .classifier import LocalClassifier, load_pack


def __getattr__(name: str) -> Any:
    # The classifier (numpy, Pillow, onnxruntime) loads on first use, not with the package:
    # a run that only reads the pack's manifest (nothing new to convert) never needs it.
    if name in ("LocalClassifier", "load_pack"):
        from . import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENV_VAR",
    "LocalClassifier",
    "Pack",
    "default_pack_path",
    "load_pack",
    "read_pack",
]
