"""The review page teaches as it goes: after every few decisions, a pack is trained from the
decisions made so far (`train --from-decisions`: `teach.build_layout`, `train_pack`) and the files
still undecided are labelled again with it, in a background thread; those it is now sure of
(no tag below `--min-confidence`) leave the list: "12 files no longer need you".

Such a file is not decided by anyone. The taught pack is kept as `OUT/.orthovision/taught-pack`,
and the next `convert` (or `watch`, `review --apply`) into OUT uses it when no `--models` is
given (`decisions.taught_pack`): the file is then labelled again by that pack, under the same
policy, and written with the taught model's labels and sources (`local:head:user-...`), never
as a person's. `OUT/.orthovision/taught.json` says which round settled which files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..batch.analyse import classify_image
from ..decisions import TAUGHT_PACK, DecisionBook
from ..errors import OrthovisionError
from ..inputs.reader import probe
from ..inputs.source import SourceImage
from ..labels.local import load_pack
from ..labels.local.train import train_pack
from ..labels.model import Labels
from ..labels.policy import uncertain_tags
from .apply import TAUGHT_LOG
from .features import background_priority
from .items import ReviewItem
from .safefs import open_input
from .teach import build_layout

TEACH_EVERY = 5  # new decided files before the next round
ROUND_PREFIX = "taught-round-"


class Rescorer:
    """Rounds of teaching and re-scoring for one output folder, one round at a time."""

    def __init__(
        self,
        output: Path,
        book: DecisionBook,
        items: Callable[[], Sequence[ReviewItem]],
        base: Path | None = None,
        min_confidence: float = 0.8,
        every: int = TEACH_EVERY,
    ):
        self.output = output
        self.book = book
        self.items = items
        self.base = base
        self.min_confidence = min_confidence
        self.every = every
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.taught = 0  # decided files the last round learnt from
        self.settled: dict[str, str] = {}  # input -> content hash the taught pack is sure of
        self.message = ""
        self._recall()

    def _recall(self) -> None:
        """What an earlier page taught this output: its pack is still used by later runs, so
        the files it settled stay off the list after a restart."""
        if not (self.output / TAUGHT_PACK / "manifest.json").is_file():
            return
        try:
            record = json.loads((self.output / TAUGHT_LOG).read_text(encoding="utf-8"))
            settled = {str(s["input"]): str(s["sha256"]) for s in record.get("settled", [])}
            taught = int(record.get("decided_files", 0))
            rounds = int(record.get("round", 0) or 0)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return
        self.settled, self.taught, self.rounds = settled, taught, rounds
        if settled:
            self.message = f"taught earlier from {taught} decided file(s)"

    def _decided(self) -> int:
        return sum(1 for it in self.items() if self.book.current(it.input, it.sha256) is not None)

    def note(self) -> bool:
        """After a save: start a round when `every` more files were decided since the last one
        (and none is running). True when one started."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            decided = self._decided()
            if decided - self.taught < self.every:
                return False
            self._thread = threading.Thread(
                target=self._round, args=(decided,), name="review-teach", daemon=True
            )
            self.message = f"learning from {decided} decided file(s)"
            self._thread.start()
            return True

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "running": self.running,
                "rounds": self.rounds,
                "taught": self.taught,
                "every": self.every,
                "settled": sorted(self.settled),
                "message": self.message,
            }

    def _round(self, decided: int) -> None:
        background_priority()
        try:
            settled = self._teach_and_score()
        except OrthovisionError as exc:  # too few decisions of two values, a broken pack
            with self._lock:
                self.taught = decided
                self.message = f"not learnt yet: {exc.one_line()}"
            return
        except Exception as exc:  # a bug must not take the page down; said on the page
            with self._lock:
                self.taught = decided
                self.message = f"not learnt: unexpected {type(exc).__name__}: {exc}"
            return
        with self._lock:
            self.rounds += 1
            self.taught = decided
            self.settled = settled
            self.message = f"learnt from {decided} decided file(s); {len(settled)} file(s) no longer need you"
        self._log(decided, settled)

    def _teach_and_score(self) -> dict[str, str]:
        state = self.output / TAUGHT_PACK.parent
        state.mkdir(parents=True, exist_ok=True)
        _sweep_rounds(state)
        # Not a TemporaryDirectory: its finalizer runs at interpreter exit while this daemon
        # thread may still be writing into it (a traceback on Ctrl-C). Leftovers of a process
        # that died are swept by the next round (the pid is in the name).
        tmp = tempfile.mkdtemp(prefix=f"{ROUND_PREFIX}{os.getpid()}-", dir=state)
        try:
            # Trained under its final name (a pack records its folder's name as its own).
            fresh = Path(tmp) / TAUGHT_PACK.name
            (Path(tmp) / "layout").mkdir()
            build_layout(Path(tmp) / "layout", [self.output])
            train_pack(Path(tmp) / "layout", fresh, base=self.base)
            _swap_in(fresh, self.output / TAUGHT_PACK)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        clf = load_pack(self.output / TAUGHT_PACK)
        settled: dict[str, str] = {}
        for it in self.items():
            if not it.sha256 or self.book.current(it.input, it.sha256) is not None:
                continue
            if self.book.get(it.input) is not None:  # a stale decision: the person's to redo
                continue
            try:
                # As the server reads inputs (safefs): known, regular, never blocking.
                with open_input(Path(it.input), it.size, it.mtime_ns) as (path, _):
                    pr = probe(path)
                    labels = classify_image(
                        SourceImage(path, it.rel, pr.format, probed=True), pr, Labels(), [clf]
                    )
            except OrthovisionError:
                continue
            if not uncertain_tags(labels, self.min_confidence):
                settled[it.input] = it.sha256
        return settled

    def _log(self, decided: int, settled: dict[str, str]) -> None:
        record = {
            "round": self.rounds,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "decided_files": decided,
            "pack": str(self.output / TAUGHT_PACK),
            "settled": [{"input": k, "sha256": v} for k, v in sorted(settled.items())],
        }
        path = self.output / TAUGHT_LOG
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)


def _sweep_rounds(state: Path) -> None:
    """Remove the scratch folders of rounds whose process is gone (killed mid-training)."""
    for d in state.glob(f"{ROUND_PREFIX}*"):
        pid = d.name[len(ROUND_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, not ours
        return True
    return True


def _swap_in(fresh: Path, dest: Path) -> None:
    """Replace the pack at `dest` by `fresh`: a reader sees the old pack or the new one (for the
    instant between the two renames, none: the embedded pack)."""
    old = dest.with_name(f"{dest.name}.old-{os.getpid()}")
    if dest.exists():
        os.replace(dest, old)
    os.replace(fresh, dest)
    shutil.rmtree(old, ignore_errors=True)
