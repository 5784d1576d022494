"""A real Orthanc (Debian packages `orthanc` and `orthanc-dicomweb`) on loopback, for the tests.

Each instance gets a temporary JSON configuration: free DICOM and HTTP ports on 127.0.0.1, its
own storage folder, the DICOMweb plugin, an AE title, the transfer syntaxes it accepts and,
optionally, HTTP basic authentication. It can be stopped and started again on the same ports and
storage, which is how the tests cut a send off in the middle.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from conftest import require_tool

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
