"""Issue 25: `send` opens several associations by default, and a PACS that takes fewer still gets
everything, once. The peer is DCMTK's `dcmqrscp` (a real Query/Retrieve and Storage SCP) with
`MaxAssociations = 1`: it rejects a second association with "Rejected Transient: Local limit
exceeded", as PACS with a per-peer limit do. (One, not two: dcmqrscp's own index loses an
instance now and then when two of its processes store into one study at once, after answering
success; that is dcmqrscp's, seen with `--associations 4` and MaxAssociations 8.)"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import require_tool
from orthanc import dicom_files, free_port, send_cli

from orthovision_cli.defaults import DEFAULT_ASSOCIATIONS
from orthovision_cli.errors import ExitCode

pytestmark = [pytest.mark.external, pytest.mark.slow]


@pytest.fixture
def qrscp(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(destination, storage folder) of a dcmqrscp that takes one association at a time."""
    port = free_port()
    db = tmp_path / "qr-db"
    db.mkdir()
    cfg = tmp_path / "qr.cfg"
    cfg.write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 1\n"
        "HostTable BEGIN\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\nQRSCP {db} RW (500, 1024mb) ANY\nAETable END\n"
    )
    proc = subprocess.Popen(
        [require_tool("dcmqrscp"), "-c", str(cfg), "+xy", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "dcmqrscp did not start"
                time.sleep(0.1)
        yield f"dicom://QRSCP@127.0.0.1:{port}", db
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_default_is_several_associations_and_a_limited_peer_gets_everything_once(
    send_out: Path, qrscp: tuple[str, Path]
) -> None:
    assert DEFAULT_ASSOCIATIONS > 1  # more than this peer takes
    dest, db = qrscp
    files = dicom_files(send_out)
    # The C-ECHO's association may still count on the peer's side when the first worker opens
    # its own: rejected transient, it is retried (as an unreachable peer is), not fatal.
    proc = send_cli(str(send_out), "--to", dest)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert f"the peer accepted 1 of {DEFAULT_ASSOCIATIONS} associations" in proc.stderr, proc.stderr
    assert "Local limit exceeded" in proc.stderr and "--associations 1 asks no more" in proc.stderr
    assert f"{len(files)} stored" in proc.stderr
    stored = [pydicom.dcmread(p, stop_before_pixels=True) for p in db.glob("*.dcm")]
    uids = [str(ds.SOPInstanceUID) for ds in stored]
    assert sorted(uids) == sorted(files)  # every instance, each once
    # What the peer confirmed is not sent again; --associations 1 asks no more: no warning.
    again = send_cli(str(send_out), "--to", dest, "--associations", "1")
    assert again.returncode == ExitCode.OK, again.stderr
    assert f"{len(files)} unchanged" in again.stderr and "warning" not in again.stderr
    forced = send_cli(str(send_out), "--to", dest, "--associations", "1", "--force")
    assert forced.returncode == ExitCode.OK and "warning" not in forced.stderr, forced.stderr


def test_a_peer_busy_at_the_start_is_waited_for_not_failed(send_out: Path, qrscp: tuple[str, Path]) -> None:
    """Someone else holds the peer's only association when `send` starts: its C-ECHO is
    rejected transient ("Local limit exceeded") and is tried again with backoff until the other
    association is released (seen in CI: the previous `send`'s association still counted)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    dest, db = qrscp
    port = int(dest.rsplit(":", 1)[1])
    ae = AE(ae_title="OTHER")
    ae.add_requested_context(Verification)
    other = ae.associate("127.0.0.1", port, ae_title="QRSCP")
    assert other.is_established
    proc = subprocess.Popen(
        [sys.executable, "-m", "orthovision_cli", "send", str(send_out), "--to", dest],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.6)  # the first C-ECHO is rejected in this time (backoff 0.25 s, 0.5 s, ...)
    other.release()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.OK, err
    assert f"{len(dicom_files(send_out))} stored" in err
    assert len(list(db.glob("*.dcm"))) == len(dicom_files(send_out))
