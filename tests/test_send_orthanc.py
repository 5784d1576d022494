"""`orthovision send` against a real Orthanc (Debian `orthanc` + `orthanc-dicomweb`) on loopback.

The instances are conftest's `send_tree`: the converter's own output for every input kind plus the
bundled sample_data; each test starts its own Orthanc with a temporary configuration. HTTPS is in
test_send_https.py.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from make_inputs import make_all
from orthanc import JPEG_SYNTAXES, Orthanc, TestPki, check_in_orthanc, dicom_files, send_cli

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.remote.poll import Backoff
from orthovision_cli.send.options import SendOptions
from orthovision_cli.send.results import InstanceResult
from orthovision_cli.send.session import run_send

pytestmark = [pytest.mark.external, pytest.mark.slow]

FAST = Backoff(first=0.05, factor=2.0, cap=0.2, jitter=0.1)


@pytest.fixture
def out(send_out: Path) -> Path:
    return send_out


def _opts(**kw: object) -> SendOptions:
    base: dict[str, object] = {"backoff": FAST, "retries": 2, "timeout": 10.0}
    base.update(kw)
    return SendOptions(**base)  # type: ignore[arg-type]


def test_converted_tree_covers_every_kind(out: Path) -> None:
    files = dicom_files(out)
    kinds = {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in files.values()}
    classes = {c for c, _ in kinds}
    assert {
        "1.2.840.10008.5.1.4.1.1.77.1.4",
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
    } <= classes
    assert {ts for _, ts in kinds} >= {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1"}
    assert any("ViewCodeSequence" in d for d in files.values())


@pytest.mark.parametrize("kind", ["dimse", "stow"])
def test_send_every_kind(out: Path, orthanc: Orthanc, kind: str) -> None:
    files = dicom_files(out)
    dest = orthanc.dest if kind == "dimse" else orthanc.dicomweb
    summary = run_send(out, [dest], _opts(batch=7))
    assert summary.exit_code == ExitCode.OK, summary.as_dict()
    assert summary.counts == {"stored": len(files)}
    check_in_orthanc(orthanc, files)
    # A re-run sends nothing: the ledger knows what the peer confirmed.
    again = run_send(out, [dest], _opts())
    assert again.counts == {"unchanged": len(files)}


def test_both_protocols_and_parallel_associations(out: Path, orthanc: Orthanc, tmp_path: Path) -> None:
    other = Orthanc(tmp_path / "second").start()
    try:
        summary = run_send(out, [orthanc.dest, other.dicomweb], _opts(associations=3, batch=2))
        assert summary.exit_code == ExitCode.OK
        n = len(dicom_files(out))
        assert summary.counts == {"stored": 2 * n}
        assert len(set(orthanc.sop_uids())) == len(orthanc.sop_uids()) == n
        assert len(other.sop_uids()) == n
    finally:
        other.stop()


@pytest.mark.parametrize("kind", ["dimse", "stow"])
def test_peer_stopped_mid_send_then_rerun(out: Path, orthanc: Orthanc, kind: str) -> None:
    files = dicom_files(out)
    dest = orthanc.dest if kind == "dimse" else orthanc.dicomweb
    stored: list[str] = []
    lock = threading.Lock()

    def on_result(res: InstanceResult) -> None:
        with lock:
            if res.status == "stored":
                stored.append(res.sop_uid)
                if len(stored) == 5:
                    orthanc.stop()  # from inside the run, between two instances

    first = run_send(out, [dest], _opts(batch=1, retries=1), on_result=on_result)
    assert 5 <= len(stored) < len(files)
    assert first.exit_code == ExitCode.DESTINATION
    failed = [r for r in first.results if r.status == "failed"]
    assert failed and {r.reason for r in failed} <= {"unreachable", "connection-lost"}
    assert len(failed) + len(stored) == len(files)

    orthanc.start()
    second = run_send(out, [dest], _opts())
    assert second.exit_code == ExitCode.OK, second.as_dict()
    # Only what was not confirmed is sent again; the peer ends with each instance exactly once.
    assert second.counts == {"unchanged": len(stored), "stored": len(files) - len(stored)}
    assert {r.sop_uid for r in second.results if r.status == "stored"} == set(files) - set(stored)
    uids = orthanc.sop_uids()
    assert sorted(uids) == sorted(files)


@pytest.mark.parametrize("kind", ["dimse", "stow"])
def test_verify_resends_what_the_peer_lost(out: Path, orthanc: Orthanc, kind: str) -> None:
    files = dicom_files(out)
    dest = orthanc.dest if kind == "dimse" else orthanc.dicomweb
    assert run_send(out, [dest], _opts()).exit_code == ExitCode.OK
    lost = orthanc.instances()[:3]
    lost_uids = {orthanc.get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"] for i in lost}
    for i in lost:
        httpx.delete(f"{orthanc.url}/instances/{i}").raise_for_status()
    plain = run_send(out, [dest], _opts())
    assert plain.counts == {"unchanged": len(files)}  # the ledger alone cannot know
    verified = run_send(out, [dest], _opts(verify=True))
    assert verified.exit_code == ExitCode.OK
    assert {r.sop_uid for r in verified.results if r.status == "stored"} == lost_uids
    assert sorted(orthanc.sop_uids()) == sorted(files)


def test_refused_jpeg_falls_back_to_uncompressed(out: Path, tmp_path: Path) -> None:
    files = dicom_files(out)
    o = Orthanc(tmp_path / "le-only", transfer_syntaxes=["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]).start()
    try:
        summary = run_send(out, [o.dest], _opts())
        assert summary.exit_code == ExitCode.OK, summary.as_dict()
        jpeg = {u for u, d in files.items() if d.file_meta.TransferSyntaxUID in JPEG_SYNTAXES}
        assert jpeg
        fell_back = {r.sop_uid for r in summary.results if r.reason == "sent-decompressed"}
        assert fell_back == jpeg
        assert all("peer accepts no JPEG" in r.message for r in summary.results if r.sop_uid in jpeg)
        check_in_orthanc(o, files, same_syntax=False)
    finally:
        o.stop()


def test_cli_wrong_called_ae_title(out: Path, orthanc: Orthanc) -> None:
    proc = send_cli(str(out), "--to", f"dicom://NOTORTHANC@127.0.0.1:{orthanc.dicom_port}")
    assert proc.returncode == ExitCode.DESTINATION
    assert "association-rejected" in proc.stderr and "Called AE title not recognised" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert orthanc.instances() == []


def test_cli_destination_down_at_start(out: Path, orthanc: Orthanc) -> None:
    port = orthanc.dicom_port
    orthanc.stop()
    proc = send_cli(
        str(out),
        "--to",
        f"dicom://ORTHANC@127.0.0.1:{port}",
        "--to",
        f"http://127.0.0.1:{orthanc.http_port}/dicom-web",
    )
    assert proc.returncode == ExitCode.DESTINATION
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2 and all("unreachable" in ln for ln in errors), proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_credentials(out: Path, tmp_path: Path) -> None:
    o = Orthanc(tmp_path / "auth", users={"alice": "right-password"}).start()
    try:
        token = tmp_path / "token"
        token.write_text("tok-SECRET-123\n")
        proc = send_cli(str(out), "--to", o.dicomweb, "--token-file", str(token))
        assert proc.returncode == ExitCode.DESTINATION
        assert "auth-refused" in proc.stderr and "HTTP 401" in proc.stderr
        proc = send_cli(
            str(out),
            "--to",
            o.dicomweb,
            "--basic-auth-env",
            "OV_BASIC",
            env={"OV_BASIC": "alice:wrong-password"},
        )
        assert proc.returncode == ExitCode.DESTINATION and "auth-refused" in proc.stderr
        assert o.instances() == []
        proc = send_cli(
            str(out),
            "--to",
            o.dicomweb,
            "--basic-auth-env",
            "OV_BASIC",
            "--json",
            "-v",
            env={"OV_BASIC": "alice:right-password"},
        )
        assert proc.returncode == ExitCode.OK, proc.stderr
        assert len(o.instances()) == len(dicom_files(out))
        for text in (proc.stdout, proc.stderr):
            assert "SECRET" not in text and "right-password" not in text
    finally:
        o.stop()


def test_cli_summary_and_rerun(out: Path, orthanc: Orthanc) -> None:
    proc = send_cli(str(out), "--to", orthanc.dest, "--associations", "2")
    assert proc.returncode == ExitCode.OK, proc.stderr
    n = len(dicom_files(out))
    assert f"{n} stored" in proc.stderr
    proc = send_cli(str(out), "--to", orthanc.dest)
    assert proc.returncode == ExitCode.OK and f"{n} unchanged" in proc.stderr


def _inputs(tmp: Path) -> tuple[Path, Path]:
    src = tmp / "src"
    src.mkdir()
    kinds = make_all(src)
    manifest = tmp / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "PatientID", "Modality", "BodyPart"])
        for k in kinds:
            w.writerow([k.path.name, "PAT-3", k.modality, k.body_part])
    return src, manifest


def test_convert_send_is_pipelined(orthanc: Orthanc, tmp_path: Path) -> None:
    from orthovision_cli.send.feed import ConvertFeed

    src, manifest = _inputs(tmp_path)
    out = tmp_path / "out"
    stored = threading.Event()
    waited: list[bool] = []

    def on_result(res: InstanceResult) -> None:
        if res.status == "stored":
            stored.set()

    def on_event(kind: str, done: int, total: int, result: object) -> None:
        feed.event(kind, done, total, result)
        if kind == "written" and done == total:
            # Before the last instance is handed over, earlier ones must already be at the peer:
            # sending runs alongside the conversion, not after it.
            waited.append(stored.wait(timeout=30))

    settings = ConvertSettings(inputs=[src], output=out, manifest=manifest, use_models=False, jobs=1)
    with ConvertFeed(out, [orthanc.dest, orthanc.dicomweb], _opts(), on_result) as feed:
        summary = run_convert(settings, on_event)
    assert waited == [True]
    n = len(dicom_files(out))
    assert summary.counts == {"converted": n}
    assert feed.summary.exit_code == ExitCode.OK
    assert feed.summary.counts == {"stored": 2 * n}  # each instance once per destination
    assert sorted(orthanc.sop_uids()) == sorted(dicom_files(out))


def test_cli_convert_send_destination_down(tmp_path: Path) -> None:
    src, manifest = _inputs(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orthovision_cli",
            "convert",
            str(src),
            "-o",
            str(out),
            "--manifest",
            str(manifest),
            "--no-models",
            "--send",
            "dicom://PACS@127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == ExitCode.DESTINATION, proc.stderr
    assert len(dicom_files(out)) > 0  # the conversion itself went through
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: dicom://PACS@127.0.0.1:9")]
    assert len(errors) == 1 and "unreachable" in errors[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", ["dimse", "stow"])
def test_storage_full_at_the_peer(out: Path, tmp_path: Path, kind: str) -> None:
    # Orthanc with room for one patient, that patient protected: a second patient cannot be stored.
    o = Orthanc(tmp_path / "full", extra={"MaximumPatientCount": 1}).start()
    try:
        dest = o.dest if kind == "dimse" else o.dicomweb
        aside = tmp_path / "aside"
        (out / "PAT-2").rename(aside)
        assert run_send(out, [dest], _opts()).exit_code == ExitCode.OK
        (patient,) = o.get("/patients")
        httpx.put(f"{o.url}/patients/{patient}/protected", content="1").raise_for_status()
        aside.rename(out / "PAT-2")
        summary = run_send(out, [dest], _opts())
        assert summary.exit_code == ExitCode.SOME_FAILED
        failed = [r for r in summary.results if r.status == "failed"]
        assert failed and all(r.rel.startswith("PAT-2/") for r in failed)
        assert {r.status for r in summary.results if r.rel.startswith("PAT-1/")} == {"unchanged"}
        # DIMSE: the peer's status (0xA700). Orthanc's STOW-RS answers 200 listing nothing: not stored.
        expect = "peer-out-of-resources" if kind == "dimse" else "not-confirmed"
        assert {r.reason for r in failed} == {expect}
        if kind == "stow":  # no reason from the server, but the line says it confirmed nothing
            assert all("confirmed none of the" in r.message and "gave no reason" in r.message for r in failed)
        assert all(ln not in o.sop_uids() for ln in (r.sop_uid for r in failed))
    finally:
        o.stop()


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""
    pki = TestPki(tmp_path / "tls")
    ca = pki.ca("ca")
    cert, key = pki.issue("ca", "srv", "IP:127.0.0.1,DNS:localhost")
    return {"ca": ca, "cert": cert, "key": key}


def tls_orthanc(folder: Path, certificates: dict[str, Path], *, client_certificate: bool) -> Orthanc:
    """A real Orthanc speaking DICOM TLS with the test CA's server certificate, requiring a
    client certificate from that CA or not."""
    return Orthanc(
        folder,
        extra={
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": str(certificates["cert"]),
            "DicomTlsPrivateKey": str(certificates["key"]),
            "DicomTlsTrustedCertificates": str(certificates["ca"]),
            "DicomTlsRemoteCertificateRequired": client_certificate,
        },
    ).start()


def test_dicom_tls(out: Path, tmp_path: Path, certificates: dict[str, Path]) -> None:
    o = tls_orthanc(tmp_path / "tls-orthanc", certificates, client_certificate=False)
    try:
        dest = f"dicoms://ORTHANC@127.0.0.1:{o.dicom_port}"
        proc = send_cli(str(out), "--to", dest, "--ca-bundle", str(certificates["ca"]))
        assert proc.returncode == ExitCode.OK, proc.stderr
        assert sorted(o.sop_uids()) == sorted(dicom_files(out))
        # Without our CA the server's certificate is not trusted: refused before any data is sent.
        proc = send_cli(str(out), "--to", dest, "--force")
        assert proc.returncode == ExitCode.DESTINATION
        assert "TLS handshake failed" in proc.stderr and "Traceback" not in proc.stderr
        # --insecure: encrypted, the server's certificate not checked (as for https://).
        proc = send_cli(str(out), "--to", dest, "--force", "--insecure")
        assert proc.returncode == ExitCode.OK, proc.stderr
    finally:
        o.stop()


def test_dicom_tls_client_certificate(out: Path, tmp_path: Path, certificates: dict[str, Path]) -> None:
    pki = TestPki(certificates["ca"].parent)
    cert, key = pki.issue("ca", "client", "DNS:orthovision-client", client=True)
    o = tls_orthanc(tmp_path / "mtls-orthanc", certificates, client_certificate=True)
    try:
        dest = f"dicoms://ORTHANC@127.0.0.1:{o.dicom_port}"
        common = (str(out), "--to", dest, "--ca-bundle", str(certificates["ca"]), "--retries", "1")
        proc = send_cli(*common)
        assert proc.returncode == ExitCode.DESTINATION, proc.stderr
        assert "TLS handshake failed" in proc.stderr and "--client-cert" in proc.stderr
        assert "Traceback" not in proc.stderr and o.instances() == []
        proc = send_cli(*common, "--client-cert", str(cert), "--client-key", str(key))
        assert proc.returncode == ExitCode.OK, proc.stderr
        assert sorted(o.sop_uids()) == sorted(dicom_files(out))
    finally:
        o.stop()
