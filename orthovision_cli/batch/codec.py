"""Plain data in the state: a dataclass tree (a `PlanInput` with its probe, labels and patient)
to JSON and back, guided by the dataclasses' own type hints.

JSON, not pickle: the state outlives a version of this package (a renamed class must not make
the state unreadable, or run code on load), and a person can read it. Bytes are base64, paths and
datetimes strings; a value that does not fit its type raises `CodecError`.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Mapping
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
    cls: Any = type(value)
    if hasattr(cls, "__dataclass_fields__") and not isinstance(value, type):
        out = {}
        for name, default in _fields_of(cls):
            v = getattr(value, name)
            if defaults or default is _NO_DEFAULT or v != default:
                out[name] = to_plain(v, defaults)
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


_NO_DEFAULT = object()


@cache
def _fields_of(cls: type) -> tuple[tuple[str, Any], ...]:
    """A dataclass's fields, each with its default (a factory's value, made once to compare)."""
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out.append((f.name, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            out.append((f.name, f.default_factory()))
        else:
            out.append((f.name, _NO_DEFAULT))
    return tuple(out)


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
    """`data` (from JSON) as a value of type `tp` (`_decoder`)."""
    return _decoder(tp)(data)


Decode = Callable[[Any], Any]


@cache
def _decoder(tp: Any) -> Decode:
    """The function that decodes data of type `tp`: one branch per kind of type, looked at once
    per type, not once per value (an upgrade decodes a million plans)."""
    if tp is Any:
        return _same
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _union(tp, args)
    if origin is typing.Literal:
        return functools.partial(_literal, args)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp)
    if origin in (list, tuple) or tp in (list, tuple):
        return _sequence(tp, origin, args)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return functools.partial(_mapping, args[1] if len(args) == 2 else Any)
    return functools.partial(_scalar, tp)


def _same(data: Any) -> Any:
    return data


def _union(tp: Any, args: tuple[Any, ...]) -> Decode:
    nullable = type(None) in args
    options = [a for a in args if a is not type(None)]

    def decode(data: Any) -> Any:
        if data is None and nullable:
            return None
        errors = []
        for arg in options:
            try:
                return _decoder(arg)(data)
            except CodecError as exc:
                errors.append(str(exc))
        raise CodecError("; ".join(errors) or f"{data!r} fits none of {tp}")

    return decode


def _literal(args: tuple[Any, ...], data: Any) -> Any:
    if data not in args:
        raise CodecError(f"{data!r} is not one of {args}")
    return data


def _dataclass(tp: type) -> Decode:
    # The fields' types are resolved at the first value, not here: a dataclass may name itself.
    fields: list[tuple[str, Any]] = []

    def decode(data: Any) -> Any:
        if not isinstance(data, dict):
            raise CodecError(f"{tp.__name__} needs an object, not {type(data).__name__}")
        if not fields:
            hints = _hints(tp)
            fields[:] = [(f.name, hints[f.name]) for f in dataclasses.fields(tp) if f.init]
        kwargs = {name: _decoder(hint)(data[name]) for name, hint in fields if name in data}
        try:
            return tp(**kwargs)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"{tp.__name__}: {exc}") from exc

    return decode


def _sequence(tp: Any, origin: Any, args: tuple[Any, ...]) -> Decode:
    fixed = origin is tuple and bool(args) and args[-1] is not Ellipsis
    as_tuple = origin is tuple or tp is tuple
    item = args[0] if args else Any

    def decode(data: Any) -> Any:
        if not isinstance(data, list):
            raise CodecError(f"needs a list, not {type(data).__name__}")
        if fixed:
            if len(args) != len(data):
                raise CodecError(f"needs {len(args)} items, not {len(data)}")
            return tuple(_decoder(a)(v) for v, a in zip(data, args, strict=True))
        one = _decoder(item)
        values = [one(v) for v in data]
        return tuple(values) if as_tuple else values

    return decode


def _mapping(value_type: Any, data: Any) -> Any:
    if not isinstance(data, dict):
        raise CodecError(f"needs an object, not {type(data).__name__}")
    one = _decoder(value_type)
    return {k: one(v) for k, v in data.items()}


def _scalar(tp: Any, data: Any) -> Any:
    if tp is bytes:
        if not (isinstance(data, dict) and isinstance(data.get("base64"), str)):
            raise CodecError("bytes must be stored as base64")
        try:
            return base64.b64decode(data["base64"], validate=True)
        except ValueError as exc:
            raise CodecError(f"not base64: {exc}") from exc
    if tp is Path:
        if not isinstance(data, str):
            raise CodecError("a path must be a string")
        return Path(data)
    if tp is datetime:
        if not isinstance(data, str):
            raise CodecError("a datetime must be a string")
        try:
            return datetime.fromisoformat(data)
        except ValueError as exc:
            raise CodecError(f"not a date and time: {data!r}") from exc
    if tp is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if tp in (str, int, bool) and type(data) is tp:
        return data
    raise CodecError(f"{data!r} is not a {getattr(tp, '__name__', tp)}")
