"""`review OUT --apply`: convert the decided files now, with the settings of the last run.

Each `convert` (and `watch`) remembers its settings in `OUT/.orthovision/convert-settings.json`,
paths made absolute, so that applying decisions later names, numbers and keys the files exactly
as that command would. Extra HTTP headers (`--header`, which may hold credentials) are not
written down: decided files need no classifier, so none is asked.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ..config import ConvertSettings, RemoteSettings
from ..decisions import load, read_regular
from ..errors import UsageError

SETTINGS_FILE = Path(".orthovision") / "convert-settings.json"
TAUGHT_LOG = Path(".orthovision") / "taught.json"  # written by rescore: the last round
_PATH_FIELDS = ("output", "models", "manifest", "uid_secret")
# `--apply` converts a few decided files on this machine, even after a --cluster run (whose
# cluster may be gone by then): the outputs are the same either way.
_NOT_KEPT = ("force", "dry_run", "cluster")


def remember(settings: ConvertSettings) -> None:
    """Write the settings of a run that converted into `settings.output` (best effort)."""
    if settings.output is None or settings.dry_run:
        return
    data: dict[str, Any] = asdict(settings)
    data["inputs"] = [str(p.absolute()) for p in settings.inputs]
    for name in _PATH_FIELDS:
        value = getattr(settings, name)
        data[name] = str(Path(value).absolute()) if value is not None else None
    data["remote_options"] = {
        f.name: (str(v) if isinstance(v, Path) else v)
        for f in fields(settings.remote_options)
        if f.name != "headers" and (v := getattr(settings.remote_options, f.name)) is not None
    }
    for name in _NOT_KEPT:
        data.pop(name, None)
    path = settings.output / SETTINGS_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # the conversion itself succeeded; --apply will say why


def recall(output: Path) -> ConvertSettings:
    path = output / SETTINGS_FILE
    try:
        # A regular file only, no link followed, never blocking (the review page reads it too).
        raw = read_regular(path, 16 << 20)
        if raw is None:
            raise FileNotFoundError(path)
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"{output} has no settings of an earlier convert; run the same "
            "`orthovision convert ... -o OUT` again: it applies the decisions"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", path=path) from exc
    known = {f.name for f in fields(ConvertSettings)}
    values = {k: v for k, v in data.items() if k in known}
    values["inputs"] = [Path(p) for p in values.get("inputs", [])]
    for name in _PATH_FIELDS:
        if values.get(name) is not None:
            values[name] = Path(values[name])
    values["output"] = output  # wherever the tree is now
    values["remote_options"] = RemoteSettings.from_saved(values.get("remote_options") or {})
    try:
        return ConvertSettings(**values)
    except TypeError as exc:
        raise UsageError(f"{path}: {exc}", path=path) from exc


def decided_inputs(output: Path) -> set[str]:
    return set(load(output))


def settled_inputs(output: Path) -> set[str]:
    """The files the review page's taught pack became sure of (review/rescore.py): `--apply`
    converts them too, labelled by that pack as any run into OUT is."""
    try:
        raw = read_regular(output / TAUGHT_LOG, 16 << 20)  # never a link, never blocking
        record = json.loads(raw.decode("utf-8")) if raw is not None else {}
        return {str(s["input"]) for s in record.get("settled", [])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return set()
