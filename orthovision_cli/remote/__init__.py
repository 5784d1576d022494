"""Remote classification through any Orthovision AI IG service (`--remote URL`).

`build_remote_source(...)` returns a `RemoteClassifier` (a LabelSource). Importing this package
is cheap; httpx is loaded when a classifier is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .classifier import RemoteClassifier, build_remote_source

__all__ = ["RemoteClassifier", "build_remote_source"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import classifier  # httpx loads only when a remote classifier is wanted

        return getattr(classifier, name)
    raise AttributeError(name)
