"""`convert --send`: each instance is sent once it is durable, from the running conversion."""

from __future__ import annotations

from typing import Any

from ..batch.supersede import read_superseded
from ..dicom.plan import (
    MF_GRAYSCALE_BYTE_SC,
    MF_GRAYSCALE_WORD_SC,
    MF_TRUE_COLOR_SC,
    SECONDARY_CAPTURE,
    VL_PHOTOGRAPHIC,
)
from .dimse import Contexts
from .scan import find_instances
from .session import SendSession

# Every SOP class and transfer syntax the converter writes: what `convert --send` proposes,
# since it cannot know in advance which of them a run will produce.
WRITTEN_SOP_CLASSES = (
    VL_PHOTOGRAPHIC,
    SECONDARY_CAPTURE,
    MF_GRAYSCALE_BYTE_SC,
    MF_GRAYSCALE_WORD_SC,
    MF_TRUE_COLOR_SC,
)
WRITTEN_COMPRESSED = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")


def convert_contexts() -> Contexts:
    """Presentation contexts for `convert --send`: everything the converter can write."""
    out = Contexts()
    for sop_class in WRITTEN_SOP_CLASSES:
        out.store[sop_class] = [list(WRITTEN_COMPRESSED), ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]]
    return out


class ConvertFeed(SendSession):
    """`convert --send`: each converted instance is queued for sending as soon as it is durable
    (the runner's "written" event comes after the file's commit and its state row); when the
    conversion ends, whatever else in the tree is not yet stored (files converted by earlier
    runs) is queued too. Leaving the context waits for every outcome."""

    def __enter__(self) -> ConvertFeed:
        super().__enter__()
        try:
            self.start(convert_contexts())
        except BaseException:
            super().__exit__(None, None, None)
            raise
        return self

    def event(self, kind: str, done: int, total: int, result: Any) -> None:
        if kind == "written" and result is not None and result.status == "converted":
            for rel in result.outputs:
                self.submit_path(self.output / rel)

    def __exit__(self, *exc: object) -> None:
        try:
            if not exc or exc[0] is None:
                instances, bad = find_instances(self.output, self.ledger)
                self.summary.unreadable.extend(bad)
                records = read_superseded(self.output)
                gone = {r.sop_uid for r in records}
                for inst in instances:
                    if inst.sop_uid not in gone:  # never sent
                        self.submit(inst)
                self.report_superseded(records, [])
        finally:
            super().__exit__(*exc)
