"""Settings of a conversion run, from options and a TOML file, validated once.

A TOML file (`--config practice.toml`) uses the long option names with dashes or underscores,
e.g. `output = "/srv/dicom"`, `inputs = ["/srv/photos"]`, `jobs = 2`, `modality = "XC"`,
`no-models = true`; the file is flat (docs/batch.md). Options given on the command line win
over the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .defaults import DEFAULT_MAX_PIXELS, DEFAULT_MIN_CONFIDENCE, DEFAULT_NAME_TEMPLATE
from .dicom.plan import PATIENT_FIELDS
from .errors import UsageError
from .memory import default_budget, parse_size
from .naming import check_template
from .types import OnCollision, OnUncertain
from .vocab.tags import TAGS

COLLISION_POLICIES = tuple(str(p) for p in OnCollision)
UNCERTAIN_POLICIES = tuple(str(p) for p in OnUncertain)
LOCAL_CLUSTER = re.compile(r"local:(\d+)")
CLUSTER_SCHEMES = ("tcp://", "tls://")


@dataclass
class ConvertSettings:
    inputs: list[Path] = field(default_factory=list)
    output: Path | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    jobs: int = 0  # 0: the number of cores
    force: bool = False
    dry_run: bool = False
    name_template: str = DEFAULT_NAME_TEMPLATE
    on_collision: OnCollision | str = OnCollision.SUFFIX
    max_pixels: int = DEFAULT_MAX_PIXELS
    fsync: bool = True
    max_memory: int | str = 0  # --max-memory: bytes or '4G'; 0: half the memory available
    # labels
    models: Path | None = None  # None: the default pack; see use_models
    use_models: bool = True
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    on_uncertain: OnUncertain | str = OnUncertain.REVIEW
    remote: str | list[str] | None = None  # several: fused per tag (remote.multi)
    remote_options: dict[str, Any] = field(default_factory=dict)
    # user data
    patient: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    manifest: Path | None = None
    path_template: str | None = None
    # execution: None runs on this machine (--jobs); else local:N or a Dask scheduler address
    cluster: str | None = None

    def validate(self) -> ConvertSettings:
        if not self.inputs:
            raise UsageError("no input given: name at least one file or folder")
        if self.output is None:
            raise UsageError("no output folder given (-o/--output)")
        if self.on_collision not in COLLISION_POLICIES:
            raise UsageError(f"--on-collision must be one of {', '.join(COLLISION_POLICIES)}")
        if self.on_uncertain not in UNCERTAIN_POLICIES:
            raise UsageError(f"--on-uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}")
        self.on_collision = OnCollision(self.on_collision)
        self.on_uncertain = OnUncertain(self.on_uncertain)
        if not 0.0 <= self.min_confidence <= 1.0:
            raise UsageError("--min-confidence must be between 0 and 1")
        if self.jobs < 0:
            raise UsageError("--jobs must be 0 (all cores) or more")
        if self.max_pixels <= 0:
            raise UsageError("--max-pixels must be positive")
        if self.max_memory:
            parse_size(self.max_memory)
        out = self.output.resolve()
        for p in self.inputs:
            try:
                if p.resolve() == out:
                    raise UsageError("the output folder must not be an input folder")
            except OSError:
                pass
        check_template(self.name_template)
        if self.cluster is not None:
            check_cluster(self.cluster)
        return self

    @property
    def worker_count(self) -> int:
        return self.jobs or (os.cpu_count() or 1)

    @property
    def memory_budget(self) -> int:
        """Bytes the images in flight may hold together (see `memory`)."""
        return parse_size(self.max_memory) if self.max_memory else default_budget()


def check_cluster(spec: str) -> None:
    """`--cluster`: `local:N` or a Dask scheduler's address; anything else is a usage error."""
    m = LOCAL_CLUSTER.fullmatch(spec)
    if m:
        if not 1 <= int(m.group(1)) <= 512:
            raise UsageError("--cluster local:N needs 1 to 512 workers")
        return
    scheme = next((s for s in CLUSTER_SCHEMES if spec.startswith(s)), None)
    if scheme is None or len(spec) == len(scheme):
        raise UsageError(
            f"--cluster must be local:N or a scheduler address "
            f"(tcp://host:8786, tls://host:8786), not {spec!r}"
        )


# What each TOML key must hold; a wrong type is a usage error, not a traceback at validation.
_TOML_KINDS: dict[str, str] = {
    "inputs": "paths",
    "output": "path",
    "models": "path",
    "manifest": "path",
    "include": "strings",
    "exclude": "strings",
    "jobs": "int",
    "max_pixels": "int",
    "min_confidence": "number",
    "max_memory": "size",
    "force": "bool",
    "dry_run": "bool",
    "fsync": "bool",
    "use_models": "bool",
    "name_template": "str",
    "on_collision": "str",
    "on_uncertain": "str",
    "remote": "strings",
    "path_template": "str",
    "cluster": "str",
    "patient": "table",
    "labels": "table",
    "remote_options": "options",
}
# The patient and label options (--patient-id, --modality, ...) may be given flat in the file.
PATIENT_KEYS = PATIENT_FIELDS
LABEL_KEYS = TAGS
# The negative flags read as settings: `no_models = true` is `use_models = false`.
_NEGATED = {"no_models": "use_models", "no_fsync": "fsync"}
_KIND_TEXT = {
    "paths": "a path or a list of paths",
    "path": "a path (string)",
    "strings": "a string or a list of strings",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "str": "a string",
    "table": "a table of strings",
    "options": "a table",
    "size": 'a size such as "4G" or a number of bytes',
}


def _checked(kind: str, value: Any) -> bool:
    if kind in ("paths", "strings"):
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if kind in ("path", "str"):
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "options":
        return isinstance(value, dict)
    if kind == "size":
        return isinstance(value, int | str) and not isinstance(value, bool)
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def load_toml(path: Path) -> dict[str, Any]:
    """Settings from a TOML file, type-checked; relative paths are relative to the file."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read configuration {path}: {exc.strerror or exc}", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"configuration {path} is not valid TOML: {exc}", path=path) from exc
    known = {f.name for f in fields(ConvertSettings)}
    out: dict[str, Any] = {}
    patient: dict[str, str] = {}
    labels: dict[str, str] = {}
    base = path.parent
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in PATIENT_KEYS or name in LABEL_KEYS:
            if not isinstance(value, str):
                raise UsageError(f"configuration {path}: {key} must be a string", path=path)
            (patient if name in PATIENT_KEYS else labels)[name] = value
            continue
        if name in _NEGATED:
            if not isinstance(value, bool):
                raise UsageError(f"configuration {path}: {key} must be true or false", path=path)
            name, value = _NEGATED[name], not value
        if name not in known:
            raise UsageError(f"configuration {path}: unknown setting {key!r}", path=path)
        kind = _TOML_KINDS.get(name, "")
        if kind and not _checked(kind, value):
            raise UsageError(f"configuration {path}: {key} must be {_KIND_TEXT[kind]}", path=path)
        if kind == "path":
            value = (base / value).expanduser()
        elif kind in ("paths", "strings") and isinstance(value, str):
            value = [value]
        if kind == "paths":
            value = [(base / v).expanduser() for v in value]
        if name == "remote" and len(value) == 1:
            value = value[0]  # one service: the setting as before
        out[name] = value
    if patient:
        out["patient"] = {**out.get("patient", {}), **patient}
    if labels:
        out["labels"] = {**out.get("labels", {}), **labels}
    return out
