"""Preview images for the review page: the stored pixels, not turned (the page turns them by
the orientation label, so what a person sees is what the DICOM will show).

Made on first request only (the page asks for what is on screen), once per file: one decode
gives the detail preview and the list thumbnail, both kept on disk under
`OUT/.orthovision/previews/` by content hash, so a second page, a restarted server or a second
`orthovision review` never decodes that file again. A 24 MP JPEG costs ~90 ms of CPU to
preview; 500 of them would cost ~45 s on every start without the disk cache.

The cache folder is trusted no further than checked: every file in it is opened relative to a
descriptor of its folder without following a link (a subfolder linked to elsewhere is neither
read, written nor pruned), regular files only.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

PREVIEW_SIDE = 640
THUMB_SIDE = 96  # the list shows 48 CSS px: sharp on a 2x screen
SIZES = {"full": PREVIEW_SIDE, "thumb": THUMB_SIDE}
CACHE_DIR = Path(".orthovision") / "previews"
CACHE_VERSION = "v1"  # in each file name: a change of sizes or quality invalidates old files
_MEMORY_SIZE = 256  # where the disk cache cannot be written (read-only output): a few MB
_STRIPES = 64
_MAX_CACHED = 16 << 20  # a 640 px JPEG is ~100 kB: anything larger is not one of ours
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PreviewCache:
    """Previews by content hash: memory, then `folder` (None: memory only), then a decode."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.decodes = 0  # files decoded by this cache (tests: a second load decodes none)
        self.exif_thumbs = 0  # list thumbnails taken from the camera's EXIF thumbnail
        self._lock = threading.Lock()
        self._memory: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        # One decode per file when the thumbnail and the detail preview are asked together.
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        # Decodes at once: no more than the CPUs (the browser opens 6 connections).
        self._decoding = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))

    def path(self, sha: str, size: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / sha[:2] / f"{sha}-{size}-{CACHE_VERSION}.jpg"

    def jpeg(self, path: Path, sha: str, size: str = "full") -> bytes:
        """JPEG bytes of the preview of `path` (content hash `sha`) at `size` ("full", "thumb");
        raises InputError (unreadable, corrupt)."""
        if size not in SIZES:
            raise ValueError(f"unknown preview size {size!r}")
        data = self._cached(sha, size)
        if data is not None:
            return data
        if size == "thumb":
            data = exif_thumb_jpeg(path, THUMB_SIDE)
            if data is not None:
                with self._lock:
                    self.exif_thumbs += 1
                self._store(sha, size, data)
                return data
        with self._stripes[int(sha[:8] or "0", 16) % _STRIPES]:
            data = self._cached(sha, size)  # made while this request waited
            if data is not None:
                return data
            with self._decoding:
                made = render_jpegs(path, SIZES.values())
            with self._lock:
                self.decodes += 1
            for name, side in SIZES.items():
                if name == size or self._cached(sha, name) is None:
                    self._store(sha, name, made[side])
        return made[SIZES[size]]

    def _cached(self, sha: str, size: str) -> bytes | None:
        with self._lock:
            data = self._memory.get((sha, size))
            if data is not None:
                self._memory.move_to_end((sha, size))
                return data
        p = self.path(sha, size)
        if p is None:
            return None
        try:
            with self._subfolder(p.parent.name, create=False) as sub:
                fd = os.open(p.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=sub)
                with os.fdopen(fd, "rb") as f:
                    st = os.fstat(f.fileno())
                    if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_CACHED:
                        return None
                    data = f.read(_MAX_CACHED)
        except OSError:
            return None
        # A file cut short (a crash before the page cache reached the disk) is made again.
        if not (data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")):
            return None
        self._remember(sha, size, data)
        return data

    def _remember(self, sha: str, size: str, data: bytes) -> None:
        with self._lock:
            self._memory[(sha, size)] = data
            while len(self._memory) > _MEMORY_SIZE:
                self._memory.popitem(last=False)

    def _store(self, sha: str, size: str, data: bytes) -> None:
        self._remember(sha, size, data)
        p = self.path(sha, size)
        if p is None:
            return
        # Atomic: a reader sees the whole file or none (never a half-written preview).
        tmp = f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            with self._subfolder(p.parent.name, create=True) as sub:
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp, dir_fd=sub)  # left by a killed server (a link: the link)
                    with os.fdopen(os.open(tmp, flags, 0o644, dir_fd=sub), "wb") as f:
                        f.write(data)
                    os.replace(tmp, p.name, src_dir_fd=sub, dst_dir_fd=sub)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=sub)
                    raise
        except OSError:  # read-only, full, or a link: the memory cache still serves this session
            pass

    @contextlib.contextmanager
    def _subfolder(self, name: str, create: bool) -> Iterator[int]:
        """A descriptor of `folder/name`, neither opened through a link; raises OSError."""
        assert self.folder is not None
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.folder)
        top = os.open(self.folder, _DIR_FLAGS)
        try:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=top)
            sub = os.open(name, _DIR_FLAGS, dir_fd=top)
        finally:
            os.close(top)
        try:
            yield sub
        finally:
            os.close(sub)

    def prune(self, keep: set[str]) -> int:
        """Delete cached previews of content no longer awaiting review; how many files. Links
        are never followed: a linked subfolder is skipped, a link in a subfolder is removed
        itself (its target untouched)."""
        if self.folder is None:
            return 0
        removed = 0
        try:
            top = os.open(self.folder, _DIR_FLAGS)
        except OSError:
            return 0
        try:
            with os.scandir(top) as subs:
                names = [e.name for e in subs if e.is_dir(follow_symlinks=False)]
            for name in names:
                with contextlib.suppress(OSError), self._subfolder(name, create=False) as sub:
                    with os.scandir(sub) as entries:
                        stale = [
                            e.name
                            for e in entries  # temporary files of a killed server too
                            if not e.is_dir(follow_symlinks=False) and e.name.split("-", 1)[0] not in keep
                        ]
                    for entry in stale:
                        with contextlib.suppress(OSError):
                            os.unlink(entry, dir_fd=sub)
                            removed += 1
        finally:
            os.close(top)
        return removed


def render_jpegs(path: Path, sides: Iterable[int]) -> dict[int, bytes]:
    """JPEG bytes of the image as stored (no EXIF rotation) at each longer side in `sides`
    (never upscaled), from one decode; raises InputError (unreadable, corrupt)."""
    from PIL import Image

    from ..inputs.preview import load_preview

    sides = sorted(set(sides), reverse=True)
    im = Image.fromarray(load_preview(path, sides[0]))
    out = {}
    for side in sides:
        if max(im.size) > side:
            im.thumbnail((side, side))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        out[side] = buf.getvalue()
    return out


# A letterbox bar: a row or column no brighter than this anywhere (JPEG ringing stays below).
_BAR_MAX = 24
_THUMB_MAX_SIDE = 1024


def exif_thumb_jpeg(path: Path, side: int) -> bytes | None:
    """The camera's EXIF thumbnail as a list thumbnail, without decoding the picture (a 24 MP
    JPEG's entropy decoding is ~90 ms; this is ~1 ms): black letterbox or pillarbox bars cut
    off (cameras put a 3:2 picture in a 160x120 thumbnail), and used only when what is left
    has the picture's shape and is big enough. None where there is none to trust."""
    import numpy as np
    from PIL import Image

    from ..inputs.preview import THUMB_ASPECT_TOLERANCE, exif_thumbnail

    try:
        with Image.open(path) as im:
            if im.format not in ("JPEG", "MPO"):
                return None
            w, h = im.size
            blob = exif_thumbnail(im.info.get("exif"))
        if blob is None or not w or not h:
            return None
        with Image.open(io.BytesIO(blob)) as t:
            if max(t.size) > _THUMB_MAX_SIDE:  # forged: a thumbnail is small (EXIF: 64 kB)
                return None
            arr = np.asarray(t.convert("RGB"))
    except (
        OSError,
        SyntaxError,
        ValueError,
        TypeError,
        ZeroDivisionError,
        EOFError,
        Image.DecompressionBombError,
    ):
        return None  # no thumbnail, or a broken one: the picture itself is decoded instead
    if arr.ndim != 3 or arr.size == 0:
        return None
    rows = np.flatnonzero(arr.max(axis=(1, 2)) > _BAR_MAX)
    cols = np.flatnonzero(arr.max(axis=(0, 2)) > _BAR_MAX)
    if not rows.size or not cols.size:
        return None
    arr = arr[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    th, tw = arr.shape[:2]
    if max(tw, th) < side or abs(tw / th - w / h) > THUMB_ASPECT_TOLERANCE * (w / h):
        return None
    small = Image.fromarray(np.ascontiguousarray(arr))
    small.thumbnail((side, side))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def render_jpeg(path: Path, side: int) -> bytes:
    """JPEG bytes of the image as stored, longer side about `side`; raises InputError."""
    return render_jpegs(path, [side])[side]
