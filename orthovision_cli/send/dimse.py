"""DIMSE Storage SCU (C-ECHO, C-STORE, C-FIND) with pynetdicom.

Presentation contexts are built from what is to be sent: for every SOP class present, one
context with the compressed transfer syntaxes found among its instances and one with the
uncompressed ones. When the peer accepts no context for an instance's own (JPEG) transfer syntax
but accepts an uncompressed one, the pixels are decoded and sent uncompressed: the same
instance, the same pixel values a viewer would decode, marked in the ledger as
`sent-decompressed`. Files whose transfer syntax was accepted are streamed from disk unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import AssociationBusy, AssociationRejected, DestinationError, DestinationUnreachable
from .destinations import Destination
from .instances import Instance
from .ledger import FAILED, STORED, Outcome

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE)
VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255

# pynetdicom logs every association at INFO and refusals at ERROR; our callers report each
# outcome once, in one line.
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


@dataclass
class Contexts:
    """Requested presentation contexts: abstract syntax -> transfer syntaxes to propose."""

    store: dict[str, list[list[str]]] = field(default_factory=dict)

    @classmethod
    def for_instances(cls, instances: Iterable[Instance]) -> Contexts:
        present: dict[str, set[str]] = {}
        for inst in instances:
            present.setdefault(inst.sop_class, set()).add(inst.transfer_syntax)
        out = cls()
        for sop_class, syntaxes in sorted(present.items()):
            compressed = sorted(ts for ts in syntaxes if ts not in UNCOMPRESSED)
            # The uncompressed context comes with every SOP class: the fallback when a peer
            # takes no JPEG context, and what native instances are sent with.
            out.store[sop_class] = ([compressed] if compressed else []) + [list(UNCOMPRESSED)]
        n = sum(len(v) for v in out.store.values()) + 1
        if n > MAX_CONTEXTS:
            raise DestinationError(f"{n} presentation contexts needed, more than {MAX_CONTEXTS}")
        return out


LOST = Outcome(FAILED, None, "connection-lost", "no C-STORE response: the association was lost")


def status_outcome(status: Any) -> Outcome:
    """Map a C-STORE response status dataset to an Outcome (empty: the peer did not answer)."""
    code = getattr(status, "Status", None)
    if code is None:
        return LOST
    code = int(code)
    comment = str(getattr(status, "ErrorComment", "") or "").strip()
    tail = f": {comment}" if comment else ""
    if code == 0x0000:
        return Outcome(STORED, code, "", "")
    if code in (0xB000, 0xB006, 0xB007) or 0xB000 <= code <= 0xBFFF:
        meaning = {
            0xB000: "coercion of data elements",
            0xB006: "elements discarded",
            0xB007: "data set does not match SOP class",
        }.get(code, "warning")
        return Outcome(STORED, code, "stored-warning", f"stored with warning 0x{code:04X} ({meaning}){tail}")
    if 0xA700 <= code <= 0xA7FF:
        return Outcome(
            FAILED,
            code,
            "peer-out-of-resources",
            f"refused 0x{code:04X}: out of resources (storage full at the peer?){tail}",
        )
    if 0xA900 <= code <= 0xA9FF:
        return Outcome(
            FAILED,
            code,
            "does-not-match-sop-class",
            f"refused 0x{code:04X}: data set does not match SOP class{tail}",
        )
    if 0xC000 <= code <= 0xCFFF:
        return Outcome(FAILED, code, "cannot-understand", f"refused 0x{code:04X}: cannot understand{tail}")
    if code == 0x0122:
        return Outcome(FAILED, code, "sop-class-refused", f"refused 0x0122: SOP class not supported{tail}")
    if code == 0x0124:
        return Outcome(FAILED, code, "not-authorised", f"refused 0x0124: not authorised{tail}")
    return Outcome(FAILED, code, "refused", f"refused 0x{code:04X}{tail}")


class DimsePeer:
    """One DIMSE destination. `open()` gives a `DimseAssociation` to reuse for many stores."""

    def __init__(
        self,
        dest: Destination,
        *,
        calling_ae: str = "ORTHOVISION",
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
        max_pdu: int = 0,
    ) -> None:
        from pynetdicom import _config

        # Stream files from disk instead of decoding them into datasets (big scans, speed).
        _config.STORE_SEND_CHUNKED_DATASET = True
        self.dest = dest
        self.calling_ae = calling_ae
        self.timeout = timeout
        if dest.tls and tls is None:
            tls = ssl.create_default_context()
        self.tls = tls
        self.max_pdu = max_pdu

    def _ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = self.timeout
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        ae.connection_timeout = min(self.timeout, 10.0)
        ae.maximum_pdu_size = self.max_pdu
        return ae

    def _associate(self, ae: Any) -> Any:
        from pynetdicom import evt

        seen: dict[str, Any] = {}

        def on_acse(event: Any) -> None:
            prim = event.primitive
            if type(prim).__name__ == "A_ASSOCIATE" and getattr(prim, "result", None) is not None:
                seen["response"] = prim

        kwargs: dict[str, Any] = {
            "ae_title": self.dest.called_ae,
            "max_pdu": self.max_pdu,
            "evt_handlers": [(evt.EVT_ACSE_RECV, on_acse)],
        }
        if self.tls is not None:
            kwargs["tls_args"] = (self.tls, self.dest.host)
        assoc = ae.associate(self.dest.host, self.dest.port, **kwargs)
        if assoc.is_established:
            _no_delay(assoc)
            return assoc
        # The answer as the handler saw it, else as the ACSE kept it (the same primitive).
        rsp = seen.get("response") or getattr(getattr(assoc, "acceptor", None), "primitive", None)
        if getattr(rsp, "result", None) is None:
            rsp = None
        where = f"{self.dest.host}:{self.dest.port}"
        if assoc.is_rejected and rsp is not None:
            busy = getattr(rsp, "result", None) == 2  # rejected transient: try again later
            raise (AssociationBusy if busy else AssociationRejected)(
                f"association rejected ({rsp.result_str}, {rsp.source_str}): {rsp.reason_str}"
            )
        if rsp is not None and getattr(rsp, "result", None) == 0:
            raise DestinationError(
                "the peer accepted none of the proposed presentation contexts",
                reason="no-presentation-context",
            )
        why = _why_unreachable(self.dest.host or "", self.dest.port or 0)
        if why == "" and self.tls:
            why = "connected, but the TLS handshake failed (see --ca-bundle, --client-cert)"
        raise DestinationUnreachable(f"cannot connect to {where}: {why or 'connected, but no DICOM answer'}")

    def echo(self) -> None:
        """C-ECHO; raises a DestinationError that says what went wrong."""
        ae = self._ae()
        ae.add_requested_context(VERIFICATION)
        assoc = self._associate(ae)
        try:
            status = assoc.send_c_echo()
            if getattr(status, "Status", None) != 0x0000:
                raise DestinationError(
                    f"C-ECHO failed ({status_outcome(status).message})", reason="echo-failed"
                )
        finally:
            if assoc.is_established:
                assoc.release()

    def open(self, contexts: Contexts) -> DimseAssociation:
        ae = self._ae()
        for sop_class, groups in contexts.store.items():
            for syntaxes in groups:
                ae.add_requested_context(sop_class, syntaxes)
        return DimseAssociation(self._associate(ae))

    def _no_find_answer(self, assoc: Any) -> DestinationError:
        """A C-FIND without a response: a peer that aborts the association instead of answering
        has refused the query (Orthanc does so for a calling AE title it does not list); one that
        stays silent is not answering at all."""
        # The missing response comes out of the DIMSE queue before the association's state says
        # why: give the A-ABORT a moment to land.
        deadline = time.monotonic() + 2.0
        while assoc.is_established and not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.02)
        if assoc.is_aborted:
            return DestinationError(
                "C-FIND refused by the peer: it aborted the association (A-ABORT) instead of "
                f"answering; is our AE title {self.calling_ae} allowed to query it (for Orthanc: "
                "DicomModalities or DicomAlwaysAllowFind)?",
                reason="find-refused",
            )
        return DestinationUnreachable(f"C-FIND got no answer within {self.timeout:g} s")

    def held(self, instances: Iterable[Instance]) -> set[str]:
        """SOP Instance UIDs the peer holds among `instances` (C-FIND, Study Root, IMAGE level:
        one query per series)."""
        from pydicom.dataset import Dataset

        series: dict[tuple[str, str], set[str]] = {}
        for inst in instances:
            series.setdefault((inst.study_uid, inst.series_uid), set()).add(inst.sop_uid)
        ae = self._ae()
        ae.add_requested_context(STUDY_ROOT_FIND)
        assoc = self._associate(ae)
        found: set[str] = set()
        try:
            for (study, ser), _uids in sorted(series.items()):
                q = Dataset()
                q.QueryRetrieveLevel = "IMAGE"
                q.StudyInstanceUID = study
                q.SeriesInstanceUID = ser
                q.SOPInstanceUID = ""
                for status, ident in assoc.send_c_find(q, STUDY_ROOT_FIND):
                    code = getattr(status, "Status", None)
                    if code is None:
                        raise self._no_find_answer(assoc)
                    if code in (0xFF00, 0xFF01) and ident is not None and "SOPInstanceUID" in ident:
                        found.add(str(ident.SOPInstanceUID))
                    elif code not in (0x0000, 0xFF00, 0xFF01):
                        raise DestinationError(
                            f"C-FIND refused by the peer: status 0x{code:04X} ({find_status(code)})"
                            f"{_comment(status)}",
                            reason="find-refused",
                        )
        finally:
            if assoc.is_established:
                assoc.release()
        return found


def find_status(code: int) -> str:
    """The meaning of a C-FIND failure status (PS3.4 C.4.1.1.4)."""
    if code == 0x0122:
        return "SOP class not supported"
    if code == 0xA700:
        return "out of resources"
    if code == 0xA900:
        return "identifier does not match SOP class"
    if code == 0xFE00:
        return "cancelled"
    if 0xC000 <= code <= 0xCFFF:
        return "unable to process"
    return "failed"


def _comment(status: Any) -> str:
    text = str(getattr(status, "ErrorComment", "") or "").strip()
    return f": {text}" if text else ""


class DimseAssociation:
    """An established association, reused for every instance a worker sends."""

    def __init__(self, assoc: Any) -> None:
        self.assoc = assoc
        self.accepted: dict[str, set[str]] = {}
        for cx in assoc.accepted_contexts:
            self.accepted.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))

    @property
    def alive(self) -> bool:
        return bool(self.assoc.is_established)

    def store(self, inst: Instance) -> Outcome:
        syntaxes = self.accepted.get(inst.sop_class)
        if not syntaxes:
            return Outcome(
                FAILED,
                None,
                "sop-class-refused",
                f"the peer accepted no presentation context for SOP class {inst.sop_class}",
            )
        if inst.transfer_syntax in syntaxes:
            try:
                return status_outcome(self.assoc.send_c_store(inst.path))
            except RuntimeError:  # the association ended between two instances
                return LOST
            except (OSError, ValueError, AttributeError) as exc:
                return Outcome(FAILED, None, "unreadable", f"cannot send {inst.rel}: {exc}")
        if not syntaxes & set(UNCOMPRESSED):
            return Outcome(
                FAILED,
                None,
                "transfer-syntax-refused",
                f"the peer accepts none of {inst.transfer_syntax} or uncompressed for this SOP class",
            )
        try:
            ds = decoded(inst)
        except Exception as exc:  # any decoder failure is this instance's, reported in one line
            return Outcome(FAILED, None, "decode-failed", f"peer takes no JPEG; decoding failed: {exc}")
        try:
            out = status_outcome(self.assoc.send_c_store(ds))
        except RuntimeError:
            return LOST
        if out.stored:
            note = "sent decompressed: the peer accepts no JPEG transfer syntax"
            return Outcome(
                STORED, out.code, "sent-decompressed", f"{note}; {out.message}" if out.message else note
            )
        return out

    def release(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()

    def abort(self) -> None:
        if self.assoc.is_established:
            self.assoc.abort()


def _no_delay(assoc: Any) -> None:
    """Turn off Nagle's algorithm: pynetdicom writes a C-STORE as several small PDUs, and a
    delayed ACK at the peer would otherwise stall each instance ~40 ms (DCMTK does the same)."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def decoded(inst: Instance) -> Any:
    """The instance with its pixel data decoded (same UIDs), as Explicit VR Little Endian."""
    import pydicom

    ds = pydicom.dcmread(inst.path)
    ds.decompress(generate_instance_uid=False)
    return ds


def _why_unreachable(host: str, port: int, timeout: float = 5.0) -> str:
    """After a failed association, one plain TCP connection says which failure it was (pynetdicom
    keeps the socket's error to its log): "" when the port does answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except ConnectionRefusedError:
        return "connection refused (nothing listens on that port; is the PACS running?)"
    except TimeoutError:
        return f"no answer within {timeout:g} s (a firewall, or a wrong address)"
    except socket.gaierror as exc:
        return f"unknown host ({exc.strerror or exc})"
    except OSError as exc:
        return exc.strerror or str(exc)
