"""Defaults that more than one command or layer relies on, written once."""

from __future__ import annotations

# Pixels per frame a reader accepts (--max-pixels): a 24 MP camera has 24 M, a big film scan ~100 M.
DEFAULT_MAX_PIXELS = 600_000_000
# The confidence a label needs to be written without a person's look (--min-confidence).
DEFAULT_MIN_CONFIDENCE = 0.8
# Where a converted instance goes under the output folder (--name-template).
DEFAULT_NAME_TEMPLATE = "{PatientID}/{StudyDate}-{StudyKey}/{Modality}-{SeriesKey}/{source}{page}.dcm"
# Files written but not yet durable and named (a crash leaves them; the next run deletes them).
TMP_PREFIX = ".orthovision-tmp-"
# Zip archives, checked on their central directory before anything is extracted
# (--zip-max-size, --zip-max-members, --zip-max-ratio): a zip bomb is refused, not extracted.
ZIP_MAX_SIZE = 16 << 30  # bytes of image members in one archive
ZIP_MAX_MEMBERS = 100_000  # entries in one archive
ZIP_MAX_RATIO = 200  # a member's size over its compressed size (members of 1 MiB or more)
DEFAULT_VISIT_GAP = 10  # minutes without a photograph that end a visit (--visit-gap)
# DIMSE associations (or STOW-RS requests) in parallel per destination (--associations,
# --send-associations): one leaves the peer idle between our messages (issue 25: ~20 instances/s
# with one, 76/s with four); a peer that takes fewer gets what it takes (send/worker.py).
DEFAULT_ASSOCIATIONS = 4
