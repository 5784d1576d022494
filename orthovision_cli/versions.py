"""What a bug report needs: the tool's version and those of the parts that shape its output."""

from __future__ import annotations

import json
from importlib import metadata

from . import __version__

MANIFEST = "manifest.json"


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def version_lines() -> list[str]:
    """`orthovision X`, the default pack's name and version (or why it cannot be read), and the
    versions of pydicom and onnxruntime. Reads the pack's manifest only: no model is loaded."""
    from .labels.local.packs import default_pack_path  # keeps `--version` free of numpy at import

    pack_dir = default_pack_path()
    try:
        manifest = json.loads((pack_dir / MANIFEST).read_text(encoding="utf-8"))
        pack = f"{manifest.get('name', pack_dir.name)} {manifest.get('version', '?')} ({pack_dir})"
    except (OSError, ValueError) as exc:
        pack = f"unavailable ({pack_dir}: {exc.__class__.__name__})"
    return [
        f"orthovision {__version__}",
        f"model pack: {pack}",
        f"pydicom {_dist_version('pydicom')}",
        f"onnxruntime {_dist_version('onnxruntime')}",
    ]
