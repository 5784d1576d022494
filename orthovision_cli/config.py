"""Settings of a conversion run, from options and a TOML file, validated once.

A TOML file (`--config practice.toml`) uses the long option names with dashes or underscores,
e.g. `output = "/srv/dicom"`, `inputs = ["/srv/photos"]`, `jobs = 2`, `[patient]` is not
needed: options and the TOML are flat. Options given on the command line win over the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UsageError

COLLISION_POLICIES = ("overwrite", "skip", "suffix")
UNCERTAIN_POLICIES = ("review", "convert", "skip")
DEFAULT_NAME_TEMPLATE = "{PatientID}/{StudyDate}-{StudyKey}/{Modality}-{SeriesKey}/{source}{page}.dcm"


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
    on_collision: str = "suffix"
    max_pixels: int = 600_000_000
    fsync: bool = True
    # labels
    models: Path | None = None  # None: the default pack; see use_models
    use_models: bool = True
    min_confidence: float = 0.5
    on_uncertain: str = "review"
    remote: str | None = None
    remote_options: dict[str, Any] = field(default_factory=dict)
    # user data
    patient: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    manifest: Path | None = None
    path_template: str | None = None

    def validate(self) -> ConvertSettings:
        if not self.inputs:
            raise UsageError("no input given: name at least one file or folder")
        if self.output is None:
            raise UsageError("no output folder given (-o/--output)")
        if self.on_collision not in COLLISION_POLICIES:
            raise UsageError(f"--on-collision must be one of {', '.join(COLLISION_POLICIES)}")
        if self.on_uncertain not in UNCERTAIN_POLICIES:
            raise UsageError(f"--on-uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise UsageError("--min-confidence must be between 0 and 1")
        if self.jobs < 0:
            raise UsageError("--jobs must be 0 (all cores) or more")
        if self.max_pixels <= 0:
            raise UsageError("--max-pixels must be positive")
        out = self.output.resolve()
        for p in self.inputs:
            try:
                if p.resolve() == out:
                    raise UsageError("the output folder must not be an input folder")
            except OSError:
                pass
        from .batch.naming import check_template

        check_template(self.name_template)
        return self

    @property
    def worker_count(self) -> int:
        return self.jobs or (os.cpu_count() or 1)


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read configuration {path}: {exc.strerror or exc}", path=path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"configuration {path} is not valid TOML: {exc}", path=path) from exc
    known = {f.name for f in fields(ConvertSettings)}
    out: dict[str, Any] = {}
    base = path.parent
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UsageError(f"configuration {path}: unknown setting {key!r}", path=path)
        if name in ("output", "models", "manifest") and isinstance(value, str):
            value = (base / value).expanduser()
        elif name == "inputs":
            if isinstance(value, str):
                value = [value]
            value = [(base / v).expanduser() for v in value]
        out[name] = value
    return out
