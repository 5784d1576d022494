"""libjpeg-turbo's lossless transform (`tjTransform`, the code behind `jpegtran`) through ctypes.

Why ctypes and not PyTurboJPEG: PyTurboJPEG 2.x refuses libjpeg-turbo < 3.0 (Debian 12 ships
2.1.5 as libturbojpeg0) and 1.x exposes crops but no turns. The TurboJPEG C API used here
(tjInitTransform / tjTransform / tjFree / tjDestroy / tjGetErrorStr2) is stable since 1.4,
so the system library serves, with the same speed as `jpegtran` itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import CorruptEntropyData

# tjTransform operations (turbojpeg.h).
OP_NONE = 0
OP_HFLIP = 1
OP_VFLIP = 2
OP_TRANSPOSE = 3
OP_TRANSVERSE = 4
OP_ROT90 = 5
OP_ROT180 = 6
OP_ROT270 = 7

OPT_PERFECT = 1  # fail rather than drop partial edge MCUs (jpegtran -perfect)
OPT_COPYNONE = 64  # copy no APPn/COM markers from the source (jpegtran -copy none)
FLAG_STOPONWARNING = 8192  # TJFLAG_STOPONWARNING: corrupt-data warnings fail the call
_ERR_FATAL = 1  # tjGetErrorCode: TJERR_FATAL (TJERR_WARNING is 0)
_PF_GRAY = 6  # TJPF_GRAY


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class _Transform(ctypes.Structure):
    _fields_ = [
        ("r", _Region),
        ("op", ctypes.c_int),
        ("options", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("customFilter", ctypes.c_void_p),
    ]


class TurboJpegError(RuntimeError):
    """libturbojpeg could not transform the stream (damaged data, or the library is missing)."""


_lib: Any = None
_lib_error: str | None = None
_lock = threading.Lock()
_local = threading.local()


def _library_names() -> Iterator[str]:
    # The usual names first: find_library runs ldconfig (tens of milliseconds a worker).
    yield from ("libturbojpeg.so.0", "libturbojpeg.so", "libturbojpeg.dylib", "turbojpeg.dll")
    if found := ctypes.util.find_library("turbojpeg"):
        yield found


def _load() -> Any:
    global _lib, _lib_error
    with _lock:
        if _lib is not None or _lib_error is not None:
            return _lib
        for name in _library_names():
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            lib.tjInitTransform.restype = ctypes.c_void_p
            lib.tjInitTransform.argtypes = []
            lib.tjTransform.restype = ctypes.c_int
            lib.tjTransform.argtypes = [
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_ulong,
                ctypes.c_int,
                ctypes.POINTER(ctypes.c_void_p),
                ctypes.POINTER(ctypes.c_ulong),
                ctypes.POINTER(_Transform),
                ctypes.c_int,
            ]
            lib.tjFree.restype = None
            lib.tjFree.argtypes = [ctypes.c_void_p]
            lib.tjDestroy.restype = ctypes.c_int
            lib.tjDestroy.argtypes = [ctypes.c_void_p]
            lib.tjGetErrorStr2.restype = ctypes.c_char_p
            lib.tjGetErrorStr2.argtypes = [ctypes.c_void_p]
            lib.tjGetErrorCode.restype = ctypes.c_int
            lib.tjGetErrorCode.argtypes = [ctypes.c_void_p]
            lib.tjInitDecompress.restype = ctypes.c_void_p
            lib.tjInitDecompress.argtypes = []
            lib.tjDecompressHeader3.restype = ctypes.c_int
            lib.tjDecompressHeader3.argtypes = [
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_ulong,
                *[ctypes.POINTER(ctypes.c_int)] * 4,
            ]
            lib.tjDecompress2.restype = ctypes.c_int
            lib.tjDecompress2.argtypes = [
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.c_ulong,
                ctypes.c_void_p,
                *[ctypes.c_int] * 5,
            ]
            _lib = lib
            return lib
        _lib_error = "libturbojpeg not found (Debian: libturbojpeg0)"
        return None


def available() -> bool:
    return _load() is not None


def _handle(lib: Any) -> int:
    # One handle per thread, kept for the life of the process: tjInitTransform costs more than a
    # small transform, and a handle must not be shared between threads.
    h = getattr(_local, "handle", None)
    if h is None:
        h = lib.tjInitTransform()
        if not h:
            raise TurboJpegError("tjInitTransform failed")
        _local.handle = h
    return int(h)


def _buffer(src: bytes | mmap.mmap, size: int) -> Any:
    if isinstance(src, mmap.mmap):
        # A private (ACCESS_COPY) map is writable as far as Python knows, so ctypes can point
        # into it without copying the file; libturbojpeg only reads it.
        return (ctypes.c_ubyte * size).from_buffer(src)
    return src


def decode_warning(src: bytes | mmap.mmap, size: int) -> str:
    """What libjpeg says decoding the first `size` bytes of `src` (one JPEG), or "" when it
    decodes cleanly: 'Corrupt JPEG data: ...' for damaged entropy-coded data. Decoded at 1/8
    scale into grey (the entropy decoding is all of it, the IDCT only the DC), thrown away."""
    lib = _load()
    if lib is None:
        return ""
    h = getattr(_local, "decompress", None)
    if h is None:
        h = lib.tjInitDecompress()
        if not h:
            return ""
        _local.decompress = h
    buf = _buffer(src, size)
    try:
        w, hh, sub, cs = (ctypes.c_int() for _ in range(4))
        if lib.tjDecompressHeader3(h, buf, size, *(ctypes.byref(v) for v in (w, hh, sub, cs))) != 0:
            return (lib.tjGetErrorStr2(h) or b"unreadable header").decode("utf-8", "replace")
        sw, sh = (w.value + 7) // 8, (hh.value + 7) // 8
        out = ctypes.create_string_buffer(max(sw * sh, 1))
        if lib.tjDecompress2(h, buf, size, out, sw, 0, sh, _PF_GRAY, 0) == 0:
            return ""
        return (lib.tjGetErrorStr2(h) or b"corrupt data").decode("utf-8", "replace")
    finally:
        del buf


def transform(src: bytes | mmap.mmap, size: int, op: int, options: int = 0, strict: bool = False) -> bytes:
    """The first `size` bytes of `src` (one JPEG, SOI..EOI) transformed losslessly.

    With OPT_PERFECT the call fails where partial edge MCUs would be lost; callers check
    `jpeg_transform.is_perfect` first, so a failure here means damaged data. Corrupt-data
    warnings (libjpeg goes on, as `jpegtran` does) are not failures, unless `strict`.
    """
    lib = _load()
    if lib is None:
        raise TurboJpegError(_lib_error or "libturbojpeg not available")
    handle = _handle(lib)
    buf = _buffer(src, size)
    t = _Transform()
    t.op = op
    t.options = options
    dst = ctypes.c_void_p()
    dst_size = ctypes.c_ulong(0)
    try:
        flags = FLAG_STOPONWARNING if strict else 0
        rc = lib.tjTransform(
            handle, buf, size, 1, ctypes.byref(dst), ctypes.byref(dst_size), ctypes.byref(t), flags
        )
        if rc != 0 and (strict or lib.tjGetErrorCode(handle) == _ERR_FATAL or not dst.value):
            message = (lib.tjGetErrorStr2(handle) or b"unknown error").decode("utf-8", "replace")
            raise TurboJpegError(message)
        if rc != 0:  # libjpeg went on past damaged data: the file's report entry says so
            message = (lib.tjGetErrorStr2(handle) or b"corrupt data").decode("utf-8", "replace")
            warnings.warn(CorruptEntropyData(message), stacklevel=2)
        return ctypes.string_at(dst.value, dst_size.value) if dst.value else b""
    finally:
        if dst.value:
            lib.tjFree(dst)
        del buf
