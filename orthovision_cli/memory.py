"""The memory budget (`--max-memory`): how much the images in flight may hold at once.

Each task (analysing or writing one input) gets an estimate of the memory it needs at its peak,
from facts known before it starts (file size, or the probe's pixel count and how the pixels
will be produced); the batch starts a task only while the estimates of the tasks in flight
stay within the budget. A task that alone exceeds the budget still runs, but alone.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from .errors import UsageError
from .types import JpegInfo, Orientation, Probe

MIB = 1 << 20
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
SMALL_TASK = 16 * MIB  # a pass-through JPEG: header, ranges, a kernel copy
FLOOR = 256 * MIB  # the least a default budget gives


def parse_size(text: str | int, option: str = "--max-memory") -> int:
    """'4G', '512M', '1.5g', '800MiB' or a number of bytes; raises UsageError naming `option`."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
        if not m:
            raise UsageError(f"{option}: not a size: {text!r} (e.g. 4G, 512M)")
        value = int(float(m.group(1)) * _UNITS[m.group(2)])
    if value <= 0:
        raise UsageError(f"{option} must be positive")
    return value


def available_bytes() -> int:
    """Memory available to new work: MemAvailable (Linux), else the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def default_budget() -> int:
    """Half of what the machine has available when the run starts (the rest: the page cache
    that keeps inputs and outputs moving, and everything else running)."""
    return max(FLOOR, available_bytes() // 2)


def _jpeg_coefficients(info: JpegInfo) -> int:
    """Bytes libjpeg holds for a whole image's DCT coefficients (a lossless transform)."""
    hmax = max(c[1] for c in info.components)
    vmax = max(c[2] for c in info.components)
    blocks_per_mcu = sum(c[1] * c[2] for c in info.components)
    mcus = -(-info.columns // (8 * hmax)) * -(-info.rows // (8 * vmax))
    return mcus * blocks_per_mcu * 64 * 2


def write_estimate(probe: Probe, orientation: Orientation, *, photo: bool = False) -> int:
    """Peak bytes for producing and writing one input's pixels."""
    if probe.format == "jpeg" and probe.jpeg is not None:
        info = probe.jpeg
        page = probe.first
        decode = page.photometric == "CMYK" or (page.photometric == "RGB" and photo)
        if not decode and orientation.is_identity and info.process != "progressive":
            return SMALL_TASK  # bytes go from the file to the output by the kernel
        if not decode:
            # DCT-domain transform: libjpeg holds the source's and the turned coefficients, then
            # the output stream and the mapped input (measured: 320 MB for a 50 MP 4:2:0 turn).
            return SMALL_TASK + 2 * _jpeg_coefficients(info) + 2 * probe.size
        # Decoded: the decoder's image, its numpy copy, the turned copy, buffers (measured:
        # 490 MB for a 50 MP RGB image).
        return SMALL_TASK + 7 * page.rows * page.columns * max(3, page.samples) // 2
    pixels = sum(p.rows * p.columns * p.samples * (2 if p.bits > 8 else 1) for p in probe.pages)
    # Decoded page(s), the normalised/turned copy, frames concatenated (multi-page TIFF).
    return SMALL_TASK + 3 * pixels


def analyse_estimate(size: int, suffix: str, classify: bool) -> int:
    """Peak bytes for hashing, probing and classifying one input, known before it is opened:
    its size. JPEG previews are decoded small (DCT scaling, MPF previews); a TIFF or PNG
    preview may need the decoded image, about its uncompressed size (a few times the file)."""
    if not classify or suffix.lower() in (".jpg", ".jpeg", ".jpe", ".jfif"):
        return SMALL_TASK
    return SMALL_TASK + 4 * size


@functools.cache
def _libc() -> Any:
    """The C library (ctypes), or None where it cannot be loaded: only worker processes and the
    long-running service tune their heap, so ctypes loads only for them."""
    import ctypes

    try:  # the running program links it: no search (find_library runs ldconfig)
        return ctypes.CDLL(None)
    except OSError:
        return None


def _glibc(name: str, *argtypes: Any) -> Any:
    """glibc's malloc-tuning function `name` (int result), or None where the C library has no
    such call (musl, macOS)."""
    import ctypes

    fn = getattr(_libc(), name, None)
    if fn is not None:
        fn.argtypes, fn.restype = list(argtypes), ctypes.c_int
    return fn


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the system (glibc `malloc_trim`). A service that
    has parsed large request bodies keeps their pages otherwise, and its RSS never comes down
    after a burst. False where the C library has no such call."""
    import ctypes

    trim = _glibc("malloc_trim", ctypes.c_size_t)
    if trim is None:
        return False
    trim(0)
    return True


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
WORKER_HEAP_KEEP = 256 * MIB  # free memory at the heap's top a worker keeps for the next file


def heap_keep(budget: int, workers: int) -> int:
    """How much freed heap each of `workers` keeps under a --max-memory `budget`: at most a
    quarter of its share, so kept memory never crowds out the images the budget admits."""
    if budget <= 0:
        return WORKER_HEAP_KEEP
    return max(16 * MIB, min(WORKER_HEAP_KEEP, budget // (4 * max(1, workers))))


def keep_freed_heap(keep: int = WORKER_HEAP_KEEP) -> bool:
    """Serve every allocation from the heap and keep what is freed (up to `keep` bytes at its
    top) for the next file, in a worker process. glibc otherwise maps each large block
    afresh (a lossless turn of a 24 MP JPEG allocates ~150 MB of coefficients) and returns it
    on free, so every file pays ~37,000 page faults zeroing new pages: measured, 2.85 of 9.85
    CPU seconds for 36 turns, 0.16 of 6.1 with this. False where the C library is not glibc."""
    import ctypes

    mallopt = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    return mallopt is not None and bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, keep))
