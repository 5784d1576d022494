"""What every format reader shares: the size guard, a read-only map of the file, turning
decoded pixels upright, and the one wording of a decode failure."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from ..errors import CorruptImage, ImageTooLarge, InputError, TruncatedImage, UnreadableInput
from ..types import NativePixels, Orientation, Pixels


def check_size(path: Path, rows: int, cols: int, samples: int, max_pixels: int) -> None:
    if rows * cols > max_pixels:
        raise ImageTooLarge(
            f"{cols}x{rows} pixels exceeds the limit of {max_pixels:,} pixels per frame "
            "(raise --max-pixels if the file is genuine)",
            path=path,
        )


def map_file(path: Path) -> mmap.mmap:
    try:
        with path.open("rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise UnreadableInput(f"cannot read file: {exc}", path=path) from exc


def orient_array(arr: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Apply a correction to (rows, columns[, samples]) pixels."""
    if orientation.rotate:
        arr = np.rot90(arr, k=-(orientation.rotate // 90), axes=(0, 1))
    if orientation.flip:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def native(
    arr: np.ndarray,
    orientation: Orientation,
    derivation: list[str],
    photometric: str | None = None,
    *,
    lossy_source: bool = False,
    lossy_method: str = "ISO_10918_1",
) -> Pixels:
    """Pixels of a decoded (rows, columns, samples) array, turned as the labels say."""
    arr = orient_array(arr, orientation)
    if not orientation.is_identity:
        derivation.append(describe(orientation))
    photometric = photometric or ("MONOCHROME2" if arr.shape[2] == 1 else "RGB")
    bits = 16 if arr.dtype == np.uint16 else 8
    return Pixels(
        NativePixels(arr[None], photometric, bits),
        arr.shape[0],
        arr.shape[1],
        arr.shape[2],
        bits,
        photometric,
        derivation=derivation,
        orientation_applied=orientation,
        lossy_source=lossy_source,
        lossy_method=lossy_method,
    )


def describe(orientation: Orientation) -> str:
    parts = []
    if orientation.rotate:
        parts.append(f"rotated {orientation.rotate} degrees clockwise")
    if orientation.flip:
        parts.append("mirrored left-right")
    return " and ".join(parts)


def decode_error(path: Path, exc: Exception) -> InputError:
    text = str(exc)
    if "truncated" in text.lower() or "premature" in text.lower():
        return TruncatedImage(f"image data is truncated: {text}", path=path)
    return CorruptImage(f"cannot decode image data: {text}", path=path)
