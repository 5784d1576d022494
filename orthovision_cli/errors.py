"""The one exception tree of orthovision-cli, and the exit codes the CLI maps it to
(`exit_code_for`, the one mapping every command uses; docs/exit-codes.md).

Every error carries what a user needs to act on it: the input path, a stable reason code
(used in reports), and, for remote work, the Task id or the OperationOutcome text.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Any


class ExitCode(IntEnum):
    """Stable process exit codes (documented in docs/exit-codes.md)."""

    OK = 0  # every input converted (or already converted)
    USAGE = 2  # bad option, bad configuration file, bad manifest
    NOTHING_FOUND = 3  # no input image was found
    SOME_FAILED = 4  # some inputs failed (others converted), or any input waits for review
    FATAL = 5  # nothing converted, or the run had to stop (disk full, output unwritable)
    DESTINATION = 6  # send: a destination was unreachable or refused the association/credentials
    INTERRUPTED = 130  # Ctrl-C; the state is consistent, a re-run continues


class OrthovisionError(Exception):
    """Base class of every error this package raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str, *, path: Path | str | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        if reason is not None:
            self.reason = reason

    def one_line(self) -> str:
        """The reason as one line, as reports print it."""
        text = " ".join(self.message.split())
        return f"{self.reason}: {text}"


class UsageError(OrthovisionError):
    """A user's option, configuration file or manifest is wrong."""

    reason = "usage"


class InputError(OrthovisionError):
    """One input file cannot be converted; the batch goes on."""

    reason = "input-error"


class UnsupportedFormat(InputError):
    reason = "unsupported-format"


class AlreadyDicom(UnsupportedFormat):
    """A DICOM file among the inputs: nothing to convert; ignored, not failed."""

    reason = "already-dicom"


class CorruptImage(InputError):
    reason = "corrupt-data"


class ImplausibleSize(CorruptImage):
    """The header claims more pixels than the file's data could hold (forged or cut short).
    Carries the claim, so that --max-pixels (the user's own limit) is reported first."""

    def __init__(self, message: str, *, rows: int, columns: int, path: Path | str | None = None):
        super().__init__(message, path=path)
        self.rows, self.columns = rows, columns


class TruncatedImage(CorruptImage):
    reason = "truncated-data"


class ImageTooLarge(InputError):
    reason = "image-too-large"


class UnreadableInput(InputError):
    reason = "unreadable"


class LabelError(InputError):
    """Labels are missing, contradictory or too uncertain to convert this input."""

    reason = "labels"


class NeedsReview(LabelError):
    """The classifier is not sure enough; a person must decide (--on-uncertain review)."""

    reason = "needs-review"


class InputWarning(UserWarning):
    """Something a reader tolerated in one input, which converts all the same: raised with
    `warnings.warn`, it lands in that file's report entry as `reason: message`."""

    reason = "input-warning"


class CorruptEntropyData(InputWarning):
    """A JPEG passed into DICOM as it is whose compressed data libjpeg decodes only with
    'Corrupt JPEG data' warnings: the bytes are the source's, faithfully, damage included."""

    reason = "corrupt-entropy-data"


class OutputError(OrthovisionError):
    """The output cannot be written (disk full, permission): the run stops cleanly."""

    reason = "output-error"


class StateLocked(OutputError):
    reason = "state-locked"


class ClusterError(OutputError):
    """The cluster cannot be reached, cannot do this run, or was lost: the run stops (exit 5)
    with what was finished recorded, as when the output cannot be written (`convert --cluster`)."""

    reason = "cluster"


class ModelPackError(OrthovisionError):
    """A model pack is missing, corrupt or does not match its manifest."""

    reason = "model-pack"


class RemoteError(InputError):
    """A remote classification service failed for one image.

    Carries the Task id and the OperationOutcome (as a dict) when the service gave them.
    """

    reason = "remote-error"

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        reason: str | None = None,
        task_id: str | None = None,
        outcome: dict[str, Any] | None = None,
        status_code: int | None = None,
    ):
        super().__init__(message, path=path, reason=reason)
        self.task_id = task_id
        self.outcome = outcome
        self.status_code = status_code


class DicomBuildError(OrthovisionError):
    """A DICOM builder refused to return an invalid dataset (a bug or an impossible label)."""

    reason = "dicom-build"


class SendError(OrthovisionError):
    """Sending converted instances to a destination failed."""

    reason = "send-error"


class DestinationError(SendError):
    """A destination cannot be used at all in this run; nothing more is sent to it."""

    reason = "destination"


class DestinationUnreachable(DestinationError):
    """No connection (refused, timed out, TLS failed, not a DICOM/HTTP peer)."""

    reason = "unreachable"


class AssociationRejected(DestinationError):
    """The DIMSE peer rejected the association (e.g. a wrong called AE title); the peer's reason."""

    reason = "association-rejected"


class AssociationBusy(AssociationRejected):
    """Rejected transient (PS3.8 A-ASSOCIATE-RJ result 2): the peer is busy, e.g. at its limit of
    associations; worth a retry, and a sign to open no more associations."""


class TlsRefused(DestinationError):
    """TLS with the peer failed for a reason a retry cannot fix: its certificate is not trusted or
    names another host (`tls-certificate`), or it refused our side (`tls-refused`)."""

    reason = "tls-refused"


class AuthRefused(DestinationError):
    """The DICOMweb server refused the credentials (HTTP 401/403)."""

    reason = "auth-refused"


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code of a command stopped by `error` (every command maps errors the same way).

    A bad option, configuration or model pack: the command could not start (USAGE); a
    destination that cannot be used at all: DESTINATION; Ctrl-C: INTERRUPTED; anything else of
    ours (a full disk, a locked output, an unwritable state): FATAL.
    """
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, UsageError | ModelPackError):
        return ExitCode.USAGE
    if isinstance(error, DestinationError):
        return ExitCode.DESTINATION
    return ExitCode.FATAL
