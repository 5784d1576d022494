"""Model packs: a folder with `manifest.json`, the files it lists (each with its sha256) and a
NOTICE. The default pack is the folder named by $ORTHOVISION_MODELS, else `models/` of the
source checkout the package runs from, else the copy installed with the package
(`orthovision_cli._models`, mapped from `models/` at build time)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ModelPackError

MANIFEST = "manifest.json"
PACK_FORMAT = "orthovision-pack/1"
ENV_VAR = "ORTHOVISION_MODELS"
_HASH_CHUNK = 1 << 20


INSTALLED_PACKAGE = "orthovision_cli._models"


def default_pack_path() -> Path:
    """$ORTHOVISION_MODELS, else the checkout's `models/`, else the pack installed with us."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    # A source checkout (pyproject.toml beside the package) uses its own models/, so that a
    # second working tree of the repository never picks up another tree's pack.
    repo = Path(__file__).resolve().parents[3]
    if (repo / "pyproject.toml").is_file() and (repo / "models" / MANIFEST).is_file():
        return repo / "models"
    spec = importlib.util.find_spec(INSTALLED_PACKAGE)
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        if (Path(location) / MANIFEST).is_file():
            return Path(location)
    # Nothing installed: name the checkout path, so the error says where the pack was expected.
    return Path(locations[0]) if locations else repo / "models"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# Hash checks are done once per file and process: workers build classifiers repeatedly.
_VERIFIED: dict[tuple[str, int, int], str] = {}


@dataclass
class Pack:
    """A loaded, verified manifest. Paths in it are relative to `root`."""

    root: Path
    manifest: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.root.name))

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", "0"))

    def model(self, key: str) -> dict[str, Any] | None:
        spec = self.manifest.get("models", {}).get(key)
        return dict(spec) if spec is not None else None

    def path_of(self, rel: str) -> Path:
        return self.files.get(rel) or (self.root / rel)

    @property
    def heads(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("heads", []))

    @property
    def rules(self) -> dict[str, Any]:
        return dict(self.manifest.get("rules", {}))

    @property
    def label_map(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest.get("labels", {}))


def _verify(path: Path, expected: str) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelPackError(f"model file missing: {path}", path=path) from exc
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _VERIFIED.get(key)
    if digest is None:
        digest = file_sha256(path)
        _VERIFIED[key] = digest
    if digest != expected.lower():
        raise ModelPackError(
            f"{path.name}: sha256 {digest} does not match the manifest ({expected})", path=path
        )


def referenced_files(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(relative path, sha256) of every file the manifest lists."""
    out: list[tuple[str, str]] = []
    for key, spec in manifest.get("models", {}).items():
        if "file" not in spec or "sha256" not in spec:
            raise ModelPackError(f"manifest: model {key!r} needs 'file' and 'sha256'")
        out.append((str(spec["file"]), str(spec["sha256"])))
    for head in manifest.get("heads", []):
        if "file" not in head or "sha256" not in head:
            raise ModelPackError(f"manifest: head {head.get('name')!r} needs 'file' and 'sha256'")
        out.append((str(head["file"]), str(head["sha256"])))
    return out


def read_pack(path: Path | None = None, *, verify: bool = True) -> Pack:
    """Load and check a pack; raises ModelPackError when anything is missing or altered."""
    root = (path or default_pack_path()).expanduser()
    if root.is_file() and root.name == MANIFEST:
        root = root.parent
    mf = root / MANIFEST
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelPackError(f"no model pack at {root} (no {MANIFEST})", path=root) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelPackError(f"unreadable manifest {mf}: {exc}", path=mf) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise ModelPackError(f"{mf}: not an {PACK_FORMAT} manifest", path=mf)
    files: dict[str, Path] = {}
    for rel, digest in referenced_files(manifest):
        p = (root / rel).resolve()
        if root.resolve() not in p.parents:
            raise ModelPackError(f"manifest: {rel!r} lies outside the pack", path=mf)
        if verify:
            _verify(p, digest)
        files[rel] = p
    return Pack(root=root, manifest=manifest, files=files)
