"""`orthovision send` over HTTPS (STOW-RS) to a real Orthanc behind a real TLS terminator.

Debian's Orthanc 1.10.1 crashes on its own HTTPS, so TLS is Debian's `stunnel4` on 127.0.0.1 in
front of Orthanc's HTTP port (tests/orthanc.py), with a throw-away PKI made by openssl per
module: our CA, another CA, and certificates for 127.0.0.1, for another host name, and for a
client. The instances are conftest's `send_tree` (every kind the converter writes).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from orthanc import Orthanc, Stunnel, TestPki, check_in_orthanc, dicom_files, send_cli

from orthovision_cli.errors import ExitCode

pytestmark = [pytest.mark.external, pytest.mark.slow]

FAST = ("--retries", "1", "--timeout", "20")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    p = TestPki(tmp_path_factory.mktemp("pki"))
    p.ca("ca")  # ours: what --ca-bundle names
    p.ca("other")  # a CA we do not trust
    p.ca("clients")  # the CA the server trusts for client certificates
    p.issue("ca", "server", "IP:127.0.0.1,DNS:localhost")
    p.issue("ca", "elsewhere", "DNS:pacs.example.org")  # ours, but for another host name
    p.issue("other", "stranger", "IP:127.0.0.1,DNS:localhost")
    p.issue("clients", "client", "DNS:orthovision-client", client=True)
    p.issue("other", "intruder", "DNS:orthovision-client", client=True)
    return p


def _pem(pki: TestPki, name: str) -> str:
    return str(pki.folder / f"{name}.pem")


def _pair(pki: TestPki, name: str) -> tuple[Path, Path]:
    return pki.folder / f"{name}.pem", pki.folder / f"{name}.key"


@pytest.fixture
def tunnel(orthanc: Orthanc, pki: TestPki, tmp_path: Path) -> Iterator[Stunnel]:
    """HTTPS with our CA's certificate for 127.0.0.1, forwarding to the test's Orthanc."""
    t = Stunnel(tmp_path / "stunnel", orthanc.http_port, *_pair(pki, "server")).start()
    try:
        yield t
    finally:
        t.stop()


def _ledger(out: Path) -> list[tuple[str, str, str, str]]:
    db = out / ".orthovision" / "send.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT sop_uid, destination, status, reason FROM sent").fetchall()
    return [tuple(r) for r in rows]


def _refused(proc: subprocess.CompletedProcess[str], url: str, reason: str) -> str:
    """The one `error:` line of a destination refused for `reason`; checks exit 6, no traceback."""
    assert proc.returncode == ExitCode.DESTINATION, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith(f"error: {url}: {reason}: "), proc.stderr
    return line


def test_https_every_kind_with_ca_bundle(
    send_out: Path, orthanc: Orthanc, tunnel: Stunnel, pki: TestPki
) -> None:
    files = dicom_files(send_out)
    url = tunnel.url()
    args = (str(send_out), "--to", url, "--ca-bundle", _pem(pki, "ca"), *FAST)
    proc = send_cli(*args, "--batch", "7", "--associations", "2", "--json")
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert json.loads(proc.stdout)["counts"] == {"stored": len(files)}
    check_in_orthanc(orthanc, files)  # each instance once, pixel data and JPEG fragment identical
    rows = _ledger(send_out)
    assert sorted(r[0] for r in rows) == sorted(files)
    assert {(r[1], r[2]) for r in rows} == {(url, "stored")}
    # A re-run sends nothing twice: the ledger knows what the server confirmed over TLS.
    again = send_cli(*args, "--json")
    assert again.returncode == ExitCode.OK, again.stderr
    assert json.loads(again.stdout)["counts"] == {"unchanged": len(files)}
    assert sorted(orthanc.sop_uids()) == sorted(files)


@pytest.mark.parametrize("trust", ["system-cas", "other-ca", "stranger-cert"])
def test_untrusted_server_certificate(
    send_out: Path, orthanc: Orthanc, pki: TestPki, tmp_path: Path, trust: str
) -> None:
    cert = "stranger" if trust == "stranger-cert" else "server"
    t = Stunnel(tmp_path / "stunnel", orthanc.http_port, *_pair(pki, cert)).start()
    try:
        bundle = {"system-cas": [], "other-ca": ["--ca-bundle", _pem(pki, "other")]}.get(
            trust, ["--ca-bundle", _pem(pki, "ca")]
        )
        proc = send_cli(str(send_out), "--to", t.url(), *bundle, *FAST)
    finally:
        t.stop()
    line = _refused(proc, t.url(), "tls-certificate")
    assert "certificate is not accepted" in line and "--ca-bundle" in line
    assert "unable to get local issuer certificate" in line or "self-signed" in line, line
    assert orthanc.instances() == []
    assert not [r for r in _ledger(send_out) if r[2] == "stored"]  # nothing recorded as sent


def test_certificate_for_another_host_name(
    send_out: Path, orthanc: Orthanc, pki: TestPki, tmp_path: Path
) -> None:
    t = Stunnel(tmp_path / "stunnel", orthanc.http_port, *_pair(pki, "elsewhere")).start()
    try:
        proc = send_cli(str(send_out), "--to", t.url(), "--ca-bundle", _pem(pki, "ca"), *FAST)
        line = _refused(proc, t.url(), "tls-certificate")
        assert "mismatch" in line and "127.0.0.1" in line and "another host name" in line
        assert orthanc.instances() == [] and not [r for r in _ledger(send_out) if r[2] == "stored"]
        # --insecure checks neither name nor CA (testing only); the data still goes encrypted.
        proc = send_cli(str(send_out), "--to", t.url(), "--insecure", *FAST)
        assert proc.returncode == ExitCode.OK, proc.stderr
        assert sorted(orthanc.sop_uids()) == sorted(dicom_files(send_out))
    finally:
        t.stop()


def test_https_to_a_plain_http_port(send_out: Path, orthanc: Orthanc, pki: TestPki) -> None:
    url = f"https://127.0.0.1:{orthanc.http_port}/dicom-web"
    proc = send_cli(str(send_out), "--to", url, "--ca-bundle", _pem(pki, "ca"), *FAST)
    line = _refused(proc, url, "tls-refused")
    assert "does not speak TLS on this port" in line


def test_bearer_token_over_https(send_out: Path, pki: TestPki, tmp_path: Path) -> None:
    # Orthanc has no bearer-token setting; its Lua HTTP filter checks the header stunnel passes on.
    token = f"tok-{secrets.token_hex(16)}"
    lua = tmp_path / "filter.lua"
    lua.write_text(
        "function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)\n"
        "  if string.sub(uri, 1, 10) == '/dicom-web' then\n"
        f"    return httpHeaders['authorization'] == 'Bearer {token}'\n"
        "  end\n"
        "  return true\n"
        "end\n"
    )
    o = Orthanc(tmp_path / "orthanc", extra={"LuaScripts": [str(lua)]}).start()
    t = Stunnel(tmp_path / "stunnel", o.http_port, *_pair(pki, "server")).start()
    try:
        common = (str(send_out), "--to", t.url(), "--ca-bundle", _pem(pki, "ca"), *FAST)
        wrong = send_cli(*common, "--token-env", "OV_TOKEN", env={"OV_TOKEN": "tok-wrong"})
        line = _refused(wrong, t.url(), "auth-refused")
        assert "HTTP 403" in line and o.instances() == []
        right = send_cli(*common, "--token-env", "OV_TOKEN", "--json", "-v", env={"OV_TOKEN": token})
        assert right.returncode == ExitCode.OK, right.stderr
        assert sorted(o.sop_uids()) == sorted(dicom_files(send_out))
        ledger = (send_out / ".orthovision" / "send.sqlite").read_bytes()
        for text in (wrong.stdout, wrong.stderr, right.stdout, right.stderr):
            assert token not in text and "tok-wrong" not in text
        assert token.encode() not in ledger and b"tok-wrong" not in ledger
    finally:
        t.stop()
        o.stop()


def test_client_certificate_required(send_out: Path, orthanc: Orthanc, pki: TestPki, tmp_path: Path) -> None:
    t = Stunnel(
        tmp_path / "stunnel", orthanc.http_port, *_pair(pki, "server"), client_ca=pki.folder / "clients.pem"
    ).start()
    try:
        common = (str(send_out), "--to", t.url(), "--ca-bundle", _pem(pki, "ca"), *FAST)
        none = send_cli(*common)
        line = _refused(none, t.url(), "tls-refused")
        assert "client certificate" in line
        cert, key = _pair(pki, "intruder")  # a client certificate from a CA the server does not trust
        other = send_cli(*common, "--client-cert", str(cert), "--client-key", str(key))
        line = _refused(other, t.url(), "tls-refused")
        assert "client certificate" in line
        assert orthanc.instances() == [] and not [r for r in _ledger(send_out) if r[2] == "stored"]
        cert, key = _pair(pki, "client")
        ok = send_cli(*common, "--client-cert", str(cert), "--client-key", str(key), "--batch", "5")
        assert ok.returncode == ExitCode.OK, ok.stderr
        check_in_orthanc(orthanc, dicom_files(send_out))
    finally:
        t.stop()
