"""Plain data in the state: a dataclass tree (a `PlanInput` with its probe, labels and patient)
to JSON and back, guided by the dataclasses' own type hints.

JSON, not pickle: the state outlives a version of this package (a renamed class must not make
the state unreadable, or run code on load), and a person can read it. Bytes are base64, paths and
datetimes strings; a value that does not fit its type raises `CodecError`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class CodecError(ValueError):
    """Stored data that does not decode into the type asked for."""


def to_plain(value: Any, defaults: bool = True) -> Any:
    """`value` as JSON-able data; without `defaults`, a dataclass field that holds its default
    is left out (`from_plain` gives it back the same)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if defaults or not _is_default(f, v):
                out[f.name] = to_plain(v, defaults)
        return out
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [to_plain(v, defaults) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, defaults) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise CodecError(f"cannot store a {type(value).__name__}")


def _is_default(f: dataclasses.Field[Any], value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False


def dumps(value: Any, defaults: bool = True) -> str:
    """`value` as one line of JSON; `defaults=False`: fields at their default left out."""
    return json.dumps(to_plain(value, defaults), separators=(",", ":"))


def loads(text: str | bytes, cls: type[T]) -> T:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    result: T = from_plain(data, cls)
    return result


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_plain(data: Any, tp: Any) -> Any:
    """`data` (from JSON) as a value of type `tp`: one branch per kind of type."""
    if tp is Any:
        return data
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_plain(data, arg)
            except CodecError as exc:
                errors.append(str(exc))
        raise CodecError("; ".join(errors) or f"{data!r} fits none of {tp}")
    if origin is typing.Literal:
        if data not in args:
            raise CodecError(f"{data!r} is not one of {args}")
        return data
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, dict):
            raise CodecError(f"{tp.__name__} needs an object, not {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {
            f.name: from_plain(data[f.name], hints[f.name])
            for f in dataclasses.fields(tp)
            if f.init and f.name in data
        }
        try:
            return tp(**kwargs)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"{tp.__name__}: {exc}") from exc
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(data, list):
            raise CodecError(f"needs a list, not {type(data).__name__}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(data):
                raise CodecError(f"needs {len(args)} items, not {len(data)}")
            return tuple(from_plain(v, a) for v, a in zip(data, args, strict=True))
        item = args[0] if args else Any
        values = [from_plain(v, item) for v in data]
        return tuple(values) if origin is tuple or tp is tuple else values
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(data, dict):
            raise CodecError(f"needs an object, not {type(data).__name__}")
        value_type = args[1] if len(args) == 2 else Any
        return {k: from_plain(v, value_type) for k, v in data.items()}
    if tp is bytes:
        if not (isinstance(data, dict) and isinstance(data.get("base64"), str)):
            raise CodecError("bytes must be stored as base64")
        return base64.b64decode(data["base64"])
    if tp is Path:
        if not isinstance(data, str):
            raise CodecError("a path must be a string")
        return Path(data)
    if tp is datetime:
        if not isinstance(data, str):
            raise CodecError("a datetime must be a string")
        return datetime.fromisoformat(data)
    if tp is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if tp in (str, int, bool) and type(data) is tp:
        return data
    raise CodecError(f"{data!r} is not a {getattr(tp, '__name__', tp)}")
