"""The pack's MobileNetV2 features and the camera/scanner of each file awaiting review, made in
the background while a person reviews (the look-alikes of `similar` need them).

The features are the ones the local classifier computes (`to_feature_input` on the stored
picture's 384 px preview, the pack's `features` model), so "near" means near for the heads that
label the file. Kept on disk under `OUT/.orthovision/features/` by content hash (float16, 2.5 kB
a file, written atomically), so a restarted page computes nothing twice. Inputs are read as the
review server reads them (`safefs.open_input`: known to the state, regular, never blocking) and
the cache never through a link out of its folder.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import OrthovisionError
from ..inputs.reader import probe
from ..inputs.source import SourceImage
from ..labels.local import load_pack
from ..labels.local.work import PREVIEW_SIDE, to_feature_input
from .items import ReviewItem
from .safefs import inside, open_input
from .similar import normalised

FEATURES_DIR = Path(".orthovision") / "features"
BATCH = 8


class FeatureStore:
    """Features by content hash and devices by input path; filled by `start` in a thread."""

    def __init__(self, folder: Path | None, models: Path | None = None):
        self.folder = folder
        self.models = models
        self._lock = threading.Lock()
        self._features: dict[str, np.ndarray] = {}
        self._devices: dict[str, str] = {}
        self.done = 0
        self.total = 0
        self.error = ""
        self._thread: threading.Thread | None = None

    def features(self, sha: str) -> np.ndarray | None:
        with self._lock:
            return self._features.get(sha)

    def device(self, input_path: str) -> str:
        with self._lock:
            return self._devices.get(input_path, "")

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, items: Sequence[ReviewItem], then: Callable[[], None] | None = None) -> threading.Thread:
        """Compute what is missing for `items` in a daemon thread; `then` runs when done."""
        with self._lock:
            self.total = len(items)
            self.done = 0

        def run() -> None:
            background_priority()
            try:
                self.compute(items)
            except OrthovisionError as exc:  # no pack, a broken model: no look-alikes, said so
                self.error = exc.one_line()
            finally:
                if then is not None:
                    then()

        self._thread = threading.Thread(target=run, name="review-features", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def compute(self, items: Sequence[ReviewItem]) -> None:
        todo: list[ReviewItem] = []
        for it in items:
            self._device_of(it)
            cached = self._load(it.sha256)
            if cached is not None:
                with self._lock:
                    self._features[it.sha256] = cached
                    self.done += 1
            elif it.sha256:
                todo.append(it)
            else:
                with self._lock:
                    self.done += 1
        if not todo:
            return
        clf = load_pack(self.models)
        model, size = clf.bank.model, clf.feature_size
        if model is None:
            self.error = "the pack has no features model"
            return
        for i in range(0, len(todo), BATCH):
            batch, inputs = [], []
            for it in todo[i : i + BATCH]:
                try:
                    with open_input(Path(it.input), it.size, it.mtime_ns) as (opened, _):
                        rgb = SourceImage(opened, it.rel).preview(PREVIEW_SIDE)
                except OrthovisionError:
                    continue  # unreadable now: no features, so no look-alikes
                batch.append(it)
                inputs.append(to_feature_input(rgb, size))
            if inputs:
                (feats,) = model.run(np.stack(inputs), ["features"])
                for it, f in zip(batch, feats, strict=True):
                    v = normalised(f)
                    self._store(it.sha256, v)
                    with self._lock:
                        self._features[it.sha256] = v
            with self._lock:
                self.done += len(todo[i : i + BATCH])

    def _device_of(self, it: ReviewItem) -> None:
        try:
            with open_input(Path(it.input), it.size, it.mtime_ns) as (opened, _):
                exif = probe(opened).exif
            device = " ".join(x.strip() for x in (exif.make, exif.model) if x.strip())
        except (OrthovisionError, OSError):
            device = ""
        with self._lock:
            self._devices[it.input] = device

    def _path(self, sha: str) -> Path | None:
        if self.folder is None or len(sha) < 3:
            return None
        return self.folder / sha[:2] / f"{sha}.npy"

    def _load(self, sha: str) -> np.ndarray | None:
        path = self._path(sha)
        if path is None or self.folder is None or not inside(self.folder, path.parent):
            return None  # a subfolder linked to elsewhere: not read
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    return None
                return np.load(f).astype(np.float32)
        except (OSError, ValueError):
            return None

    def _store(self, sha: str, v: np.ndarray) -> None:
        path = self._path(sha)
        if path is None:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.folder is None or not inside(self.folder, path.parent):
                return  # a subfolder linked to elsewhere: never written through
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "wb") as f:
                np.save(f, v.astype(np.float16))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only output: memory only


def background_priority() -> None:
    """Lower this thread's CPU priority (Linux: nice is per thread), so the page's requests are
    answered first while features are made or a pack is taught on a busy machine."""
    # Not Linux, or not allowed: the default priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
