"""Settings of a conversion run, from options and a TOML file, validated once.

A TOML file (`--config practice.toml`) uses the long option names with dashes or underscores,
e.g. `output = "/srv/dicom"`, `inputs = ["/srv/photos"]`, `jobs = 2`, `modality = "XC"`,
`no-models = true`; the file is flat (docs/batch.md), but for the tables `[patient]`, `[labels]`
and `[remote_options]` (`RemoteSettings`). Options given on the command line win over the file.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .defaults import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_NAME_TEMPLATE,
    DEFAULT_VISIT_GAP,
    ZIP_MAX_MEMBERS,
    ZIP_MAX_RATIO,
    ZIP_MAX_SIZE,
)
from .dicom.plan import PATIENT_FIELDS
from .dicom.records import load_records
from .errors import UsageError
from .labels.facts import parse_radiographs
from .memory import default_budget, parse_size
from .naming import check_template
from .types import OnCollision, OnUncertain
from .vocab.tags import TAGS, normalise_tag

COLLISION_POLICIES = tuple(str(p) for p in OnCollision)
UNCERTAIN_POLICIES = tuple(str(p) for p in OnUncertain)
LOCAL_CLUSTER = re.compile(r"local:(\d+)")
# A scheduler's address: host name, IPv4 or [IPv6], and port. Checked here: Dask's Client fails
# on a malformed one with a traceback from its own cleanup, after 10 s.
_CLUSTER_ADDRESS = re.compile(r"(?:tcp|tls)://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)


@dataclass(frozen=True)
class RemoteSettings:
    """The `--remote` options of a run, the same for every service it asks: what the CLI flags
    and a TOML `[remote_options]` table give, checked once (`check`), then handed as they are to
    the remote client (`remote.classifier.build_remote_source`) and the pool (`concurrency`)."""

    tags: tuple[str, ...] = ()  # --remote-tag: empty asks for every tag
    token_env: str | None = None
    token_file: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # never written down, never logged
    ca_bundle: Path | None = None
    verify: bool = True  # --insecure: False
    timeout: float = 30.0  # seconds per HTTP request
    deadline: float | None = None  # seconds for all the work on one image; None: see below
    concurrency: int = 4  # images in flight at once
    post_to_base: bool = False

    @property
    def image_deadline(self) -> float:
        """`deadline`, or by default max(120 s, 4 x timeout)."""
        return self.deadline if self.deadline is not None else max(120.0, 4 * self.timeout)

    def check(self, config: Path | None = None) -> RemoteSettings:
        """Raise UsageError (one line, naming the option, or the key of `config`) for a bad value."""

        def bad(key: str, what: str) -> UsageError:
            where = f"configuration {config}: [remote_options] {key}" if config else _REMOTE_FLAGS[key]
            return UsageError(f"{where} {what}", path=config)

        if not _positive(self.timeout):
            raise bad("timeout", "must be a number of seconds above 0")
        if self.deadline is not None and not _positive(self.deadline):
            raise bad("deadline", "must be a number of seconds above 0")
        n = self.concurrency
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise bad("concurrency", "must be a whole number, 1 or more")
        unknown = [t for t in self.tags if normalise_tag(t) is None]
        if unknown:
            raise bad("tags", f"names unknown tag(s) {', '.join(map(repr, unknown))}")
        if self.token_env is not None and not self.token_env.strip():
            raise bad("token_env", "must name an environment variable")
        for name, value in self.headers.items():
            if not _HEADER_NAME.fullmatch(name) or any(c in value for c in "\r\n\0"):
                raise bad("headers", f"{name!r} is not a valid HTTP header")
        return self

    @classmethod
    def from_table(cls, table: Mapping[str, Any], config: Path) -> RemoteSettings:
        """A TOML `[remote_options]` table (keys with `-` or `_`; paths relative to the file)."""
        values: dict[str, Any] = {}
        for key, value in table.items():
            name = key.replace("-", "_")
            if name == "insecure":  # as the flag: `insecure = true` is `verify = false`
                name, value = "verify", (not value if isinstance(value, bool) else value)
            kind = _REMOTE_KINDS.get(name)
            if kind is None:
                known = ", ".join(sorted({*_REMOTE_KINDS, "insecure"} - {"verify"}))
                raise UsageError(
                    f"configuration {config}: unknown key {key!r} in [remote_options] (known: {known})",
                    path=config,
                )
            if not _checked(kind, value):
                raise UsageError(
                    f"configuration {config}: [remote_options] {key} must be {_KIND_TEXT[kind]}", path=config
                )
            if kind == "path":
                value = (config.parent / value).expanduser()
            elif kind == "strings":
                value = (value,) if isinstance(value, str) else tuple(value)
            elif kind == "table":
                value = dict(value)
            values[name] = value
        return cls(**values).check(config)

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> RemoteSettings:
        """The settings a run wrote down (`review --apply`): JSON values, headers left out."""
        values = {k: v for k, v in saved.items() if k in _REMOTE_KINDS and k != "headers"}
        for name in ("token_file", "ca_bundle"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        values["tags"] = tuple(values.get("tags") or ())
        return cls(**values)


def _positive(value: object) -> bool:
    """A finite number above 0 (a TOML `inf` or `nan` is not a timeout)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value > 0


# RemoteSettings' fields: the option each comes from, and what a TOML table must hold.
_REMOTE_FLAGS = {
    "tags": "--remote-tag",
    "token_env": "--token-env",
    "token_file": "--token-file",
    "headers": "--header",
    "ca_bundle": "--ca-bundle",
    "verify": "--insecure",
    "timeout": "--timeout",
    "deadline": "--deadline",
    "concurrency": "--concurrency",
    "post_to_base": "--post-to-base",
}
_REMOTE_KINDS = {
    "tags": "strings",
    "token_env": "str",
    "token_file": "path",
    "headers": "table",
    "ca_bundle": "path",
    "verify": "bool",
    "timeout": "number",
    "deadline": "number",
    "concurrency": "int",
    "post_to_base": "bool",
}


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
    # zip archives: bounds checked before extraction (docs/batch.md)
    zip_max_size: int | str = ZIP_MAX_SIZE
    zip_max_members: int = ZIP_MAX_MEMBERS
    zip_max_ratio: int = ZIP_MAX_RATIO
    # labels
    models: Path | None = None  # None: the default pack; see use_models
    use_models: bool = True
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    on_uncertain: OnUncertain | str = OnUncertain.REVIEW
    remote: str | list[str] | None = None  # several: fused per tag (remote.multi)
    remote_options: RemoteSettings = field(default_factory=RemoteSettings)
    # user data
    patient: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    manifest: Path | None = None
    manifest_strict: bool = False  # a manifest row that matches no input is an error, not a warning
    path_template: str | None = None
    # The UID key (--uid-secret): None, the output's own (OUT/.orthovision/uid-secret).
    uid_secret: Path | None = None
    # a batch fact (labels.facts): the radiographs are scanned films (RG) or digital (DX)
    radiographs: str | None = None
    # --visit-gap: minutes without a photograph that end a visit (its own study); 0: off
    visit_gap: int = DEFAULT_VISIT_GAP
    # --records: the views a visit should have (None: the usual orthodontic records set);
    # --require-complete: a visit with a view missing is exit code 4
    records: Path | None = None
    require_complete: bool = False
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
        parse_size(self.zip_max_size, "--zip-max-size")
        if self.records is not None:
            load_records(self.records)  # a bad protocol file stops the run before it starts
        if self.visit_gap < 0:
            raise UsageError("--visit-gap must be 0 (off) or a number of minutes")
        if self.zip_max_members <= 0 or self.zip_max_ratio <= 0:
            raise UsageError("--zip-max-members and --zip-max-ratio must be positive")
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
        self.remote_options.check()
        if self.radiographs is not None:
            self.radiographs = parse_radiographs(self.radiographs)
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
    address = _CLUSTER_ADDRESS.fullmatch(spec)
    if address is None or not 0 < int(address.group(1)) < 65536:
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
    "uid_secret": "path",
    "manifest_strict": "bool",
    "include": "strings",
    "exclude": "strings",
    "jobs": "int",
    "max_pixels": "int",
    "min_confidence": "number",
    "max_memory": "size",
    "zip_max_size": "size",
    "zip_max_members": "int",
    "zip_max_ratio": "int",
    "visit_gap": "int",
    "records": "path",
    "require_complete": "bool",
    "force": "bool",
    "dry_run": "bool",
    "fsync": "bool",
    "use_models": "bool",
    "name_template": "str",
    "on_collision": "str",
    "on_uncertain": "str",
    "remote": "strings",
    "path_template": "str",
    "radiographs": "str",
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
    if kind == "size":
        return isinstance(value, int | str) and not isinstance(value, bool)
    if kind == "options":
        return isinstance(value, dict)
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
        if name == "remote_options":
            value = RemoteSettings.from_table(value, path)
        elif kind == "path":
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
