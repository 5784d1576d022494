"""ONNX Runtime sessions, made once per process and model file, and batched runs."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelPackError

THREADS_ENV = "ORTHOVISION_THREADS"

_SESSIONS: dict[tuple[str, int], Any] = {}
_LOCK = threading.Lock()


def _threads() -> int:
    try:
        return max(0, int(os.environ.get(THREADS_ENV, "0")))
    except ValueError:
        return 0


def session(path: Path) -> Any:
    """The process's session for `path` (0 threads: ONNX Runtime's default, all cores)."""
    import onnxruntime as ort

    threads = _threads()
    key = (str(path), threads)
    with _LOCK:
        sess = _SESSIONS.get(key)
        if sess is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            try:
                sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise ModelPackError(f"cannot load model {path.name}: {exc}", path=path) from exc
            _SESSIONS[key] = sess
    return sess


class OnnxModel:
    """One model file. Picklable: the session is looked up (or made) in each process."""

    def __init__(self, path: Path, input_name: str | None = None, max_batch: int = 16):
        self.path = path
        self.max_batch = max_batch
        self._input = input_name

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "max_batch": self.max_batch, "_input": self._input}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def session(self) -> Any:
        return session(self.path)

    @property
    def fixed_batch(self) -> bool:
        dim = self.session.get_inputs()[0].shape[0]
        return isinstance(dim, int)

    def run(self, x: np.ndarray, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run on a batch (N, ...), in chunks of at most `max_batch` (1 for fixed-batch models)."""
        sess = self.session
        name = self._input or sess.get_inputs()[0].name
        step = 1 if self.fixed_batch else self.max_batch
        parts: list[list[np.ndarray]] = []
        for i in range(0, len(x), step):
            parts.append(sess.run(list(outputs) if outputs else None, {name: x[i : i + step]}))
        if not parts:
            raise ValueError("empty batch")
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
