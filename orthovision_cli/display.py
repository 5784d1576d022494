"""Text shown to a person (stderr, log lines): file names escaped so they cannot act.

A file name may hold any byte but '/' and NUL: terminal escape sequences (clear the screen,
move the cursor), a newline that forges a `failed:` line, bidirectional overrides, or bytes that
are not UTF-8 (a `surrogateescape` str). `shown` writes each such character as a visible escape
(`\\x1b`, `\\n`, `\\u202e`, `\\xe9` for a raw byte); everything else is left as it is.
"""

from __future__ import annotations

import re

# C0/C1 controls, DEL, surrogates (undecodable bytes), and the format/separator characters
# that reorder or break a line (bidi overrides, U+2028/2029).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as surrogateescape keeps it
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{code:02x}")
    return f"\\u{code:04x}"


def shown(text: str) -> str:
    """`text` safe to print on one terminal line."""
    if text.isprintable() and text.isascii():
        return text
    return _UNSAFE.sub(_escape, text)
