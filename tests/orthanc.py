"""A real Orthanc (Debian packages `orthanc` and `orthanc-dicomweb`) on loopback, for the tests,
and what puts TLS in front of it.

Each instance gets a temporary JSON configuration: free DICOM and HTTP ports on 127.0.0.1, its
own storage folder, the DICOMweb plugin, an AE title, the transfer syntaxes it accepts and,
optionally, HTTP basic authentication. It can be stopped and started again on the same ports and
storage, which is how the tests cut a send off in the middle.

Orthanc 1.10.1's own HTTPS crashes on its first request (docs/limitations.md), so HTTPS is a real
TLS terminator from Debian, `stunnel4`, in front of Orthanc's HTTP port (`Stunnel`), with
throw-away certificates made by `openssl` at test time (`TestPki`).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pydicom
from conftest import require_tool
from pydicom.encaps import generate_frames

JPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))


def dicomweb_plugin() -> Path:
    for folder in PLUGIN_DIRS:
        for candidate in sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []:
            return candidate
    raise FileNotFoundError("libOrthancDicomWeb.so (Debian package orthanc-dicomweb)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    def __init__(
        self,
        folder: Path,
        *,
        aet: str = "ORTHANC",
        transfer_syntaxes: list[str] | None = None,
        users: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        ca: Path | None = None,
    ) -> None:
        self.exe = require_tool("Orthanc")
        self.folder = folder
        self.aet = aet
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.users = users
        self.storage = folder / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "Name": "orthovision-test",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowStore": True,
            "AcceptedTransferSyntaxes": transfer_syntaxes or ["1.2.840.10008.1.*"],
            "AuthenticationEnabled": bool(users),
            "RegisteredUsers": users or {},
            "Plugins": [str(dicomweb_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "SaveJobs": False,
            "StableAge": 1,
            "HttpsVerifyPeers": False,
            "ExecuteLuaEnabled": False,
        }
        config.update(extra or {})
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.log = folder / "orthanc.log"
        self.https = bool(config.get("SslEnabled"))
        self.dicom_tls = bool(config.get("DicomTlsEnabled"))
        self.verify: bool | str = str(ca) if ca is not None else True  # CA of an HTTPS Orthanc
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def dest(self) -> str:
        return f"dicom://{self.aet}@127.0.0.1:{self.dicom_port}"

    def start(self, timeout: float = 60) -> Orthanc:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, str(self.config)], stdout=log, stderr=log, cwd=self.folder, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                r = httpx.get(f"{self.url}/system", auth=self.auth(), timeout=2, verify=self.verify)
                if r.status_code == 200:
                    if self.dicom_tls:  # a bare TCP probe would be a failed TLS handshake
                        return self
                    with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=2):
                        return self
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def auth(self) -> tuple[str, str] | None:
        if not self.users:
            return None
        user, password = next(iter(self.users.items()))
        return (user, password)

    def get(self, path: str) -> Any:
        r = httpx.get(f"{self.url}{path}", auth=self.auth(), timeout=30, verify=self.verify)
        r.raise_for_status()
        return r.json() if "json" in r.headers.get("content-type", "") else r.content

    def instances(self) -> list[str]:
        return list(self.get("/instances"))

    def sop_uids(self) -> list[str]:
        """The SOP Instance UID of every stored instance (a list: duplicates would show)."""
        return [self.get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"] for i in self.instances()]


def dicom_files(out: Path) -> dict[str, pydicom.Dataset]:
    """The DICOM files of an output tree by SOP Instance UID."""
    found: dict[str, pydicom.Dataset] = {}
    for p in sorted(out.rglob("*.dcm")):
        ds = pydicom.dcmread(p)
        found[str(ds.SOPInstanceUID)] = ds
    return found


def check_in_orthanc(o: Orthanc, files: dict[str, pydicom.Dataset], *, same_syntax: bool = True) -> None:
    """Orthanc holds each instance once, with its modality, body part, view code and pixel data."""
    ids = o.instances()
    assert len(ids) == len(files)
    seen = []
    for oid in ids:
        tags = o.get(f"/instances/{oid}/simplified-tags")
        uid = tags["SOPInstanceUID"]
        seen.append(uid)
        ours = files[uid]
        assert tags["Modality"] == ours.Modality
        assert tags.get("BodyPartExamined", "") == ours.get("BodyPartExamined", "")
        if "ViewCodeSequence" in ours:
            theirs = tags["ViewCodeSequence"][0]
            assert theirs["CodeValue"] == ours.ViewCodeSequence[0].CodeValue
            assert theirs["CodingSchemeDesignator"] == ours.ViewCodeSequence[0].CodingSchemeDesignator
        stored = pydicom.dcmread(io.BytesIO(o.get(f"/instances/{oid}/file")))
        if same_syntax or ours.file_meta.TransferSyntaxUID not in JPEG_SYNTAXES:
            assert stored.file_meta.TransferSyntaxUID == ours.file_meta.TransferSyntaxUID
            assert stored.PixelData == ours.PixelData  # every fragment, byte for byte
            if ours.file_meta.TransferSyntaxUID in JPEG_SYNTAXES:
                # Orthanc's own view of the first frame: our JPEG fragment, unchanged.
                fragment = next(generate_frames(ours.PixelData, number_of_frames=1))
                raw = o.get(f"/instances/{oid}/frames/0/raw")
                # identical, up to the one padding byte that makes a fragment even-length (PS3.5)
                assert raw == fragment or (len(fragment) == len(raw) + 1 and fragment.startswith(raw))
        else:
            assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
            assert (stored.pixel_array == ours.pixel_array).all()  # decoded values unchanged
    assert sorted(seen) == sorted(files)


def send_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`orthovision send ARGS` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", "send", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


class TestPki:
    """Throw-away certificate authorities and certificates, made with openssl in `folder`.

    EC P-256 keys: as good as RSA for these tests and much cheaper to generate."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, folder: Path) -> None:
        self.openssl = require_tool("openssl")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _run(self, *args: str) -> None:
        subprocess.run([self.openssl, *args], cwd=self.folder, check=True, capture_output=True, timeout=60)

    def _key_request(self, name: str, subject: str) -> None:
        self._run(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
        )

    def ca(self, name: str) -> Path:
        """A self-signed CA certificate `name.pem` (its key beside it)."""
        self._key_request(name, f"/CN=orthovision test CA {name}")
        (self.folder / f"{name}.cnf").write_text(
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\n"
        )
        self._sign(name, "-signkey", f"{name}.key")
        return self.folder / f"{name}.pem"

    def issue(self, ca: str, name: str, alt_names: str, *, client: bool = False) -> tuple[Path, Path]:
        """A certificate `name.pem` and key `name.key` signed by CA `ca`; `alt_names` is the
        subjectAltName value (`IP:127.0.0.1,DNS:localhost`)."""
        self._key_request(name, f"/CN={name}")
        usage = "clientAuth" if client else "serverAuth"
        (self.folder / f"{name}.cnf").write_text(
            f"subjectAltName={alt_names}\nextendedKeyUsage={usage}\n"
            "authorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\n"
        )
        self._sign(name, "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial")
        return self.folder / f"{name}.pem", self.folder / f"{name}.key"

    def _sign(self, name: str, *signer: str) -> None:
        """`name.pem` from its request and extensions, signed as `signer` says (its own key, or
        a CA's), valid two days."""
        self._run(
            "x509", "-req", "-in", f"{name}.csr", *signer, "-out", f"{name}.pem", "-days", "2",
            "-extfile", f"{name}.cnf",
        )  # fmt: skip


class Stunnel:
    """`stunnel4` on 127.0.0.1 terminating TLS with `cert`/`key` and forwarding the plain bytes to
    `target_port`; with `client_ca`, a client certificate signed by it is required."""

    def __init__(
        self, folder: Path, target_port: int, cert: Path, key: Path, *, client_ca: Path | None = None
    ) -> None:
        self.exe = require_tool("stunnel4")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = folder / "stunnel.log"
        lines = [
            "foreground = yes",
            f"pid = {folder / 'stunnel.pid'}",
            f"output = {self.log}",
            "debug = 5",
            "[https]",
            f"accept = 127.0.0.1:{self.port}",
            f"connect = 127.0.0.1:{target_port}",
            f"cert = {cert}",
            f"key = {key}",
        ]
        if client_ca is not None:
            lines += [f"CAfile = {client_ca}", "verifyChain = yes", "requireCert = yes"]
        self.config = folder / "stunnel.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Stunnel:
        self.proc = subprocess.Popen(
            [self.exe, str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.folder,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"stunnel exited with {self.proc.returncode}:\n{text[-3000:]}")
            try:  # listening is enough: a TCP connect without a handshake is only logged
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("stunnel did not start listening")

    def url(self, host: str = "127.0.0.1") -> str:
        """The DICOMweb base through the tunnel, named by `host` (which must resolve to loopback)."""
        return f"https://{host}:{self.port}/dicom-web"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
