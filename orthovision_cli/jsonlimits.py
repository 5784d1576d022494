"""JSON from a peer, parsed with limits: nesting depth, number length and no NaN/Infinity.

Python's json module recurses per nesting level (100,000 `[` raise RecursionError, caught as
a bug elsewhere) and converts integers of any length (5,000 digits cost quadratic time, or
raise ValueError past 4,300). Both the service (a client's Bundle) and the remote client (a
service's answer) read JSON through `loads`, which raises `JsonLimitError` (a ValueError)."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # FHIR resources nest about 10 levels; extensions a few more
MAX_NUMBER_CHARS = 64


class JsonLimitError(ValueError):
    """The document is not JSON, or exceeds a limit; the message says which, in one line."""


def _number(text: str) -> int | float:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonLimitError(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    return float(text) if any(c in text for c in ".eE") else int(text)


def _constant(name: str) -> Any:
    raise JsonLimitError(f"{name} is not JSON")


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    try:
        value = json.loads(data, parse_int=_number, parse_float=_number, parse_constant=_constant)
    except RecursionError:
        raise JsonLimitError(f"nested more than {max_depth} levels deep") from None
    except JsonLimitError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonLimitError(f"not JSON: {' '.join(str(exc).split())[:200]}") from None
    _check_depth(value, max_depth)
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    """Iteratively (no recursion of our own), the deepest array/object nesting."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: list[Any] = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise JsonLimitError(f"nested more than {max_depth} levels deep")
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
