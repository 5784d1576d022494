"""`convert --remote`: the batch classifies through a real IG service on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

pytest.importorskip("starlette")

from conftest import SAMPLE, dciodvfy

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings, RemoteSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.labels.local import load_pack
from orthovision_cli.server.app import create_app
from orthovision_cli.server.config import ServerConfig
from orthovision_cli.server.runner import serve_in_thread

PHOTOS = SAMPLE / "photos"


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    # The embedded model pack behind the reference service: the same answers as local mode.
    app = create_app(load_pack(None), ServerConfig(workers=2))
    with serve_in_thread(app) as url:
        yield url


def test_convert_with_remote_labels(service: str, tmp_path: Path) -> None:
    settings = ConvertSettings(
        inputs=[PHOTOS],
        output=tmp_path / "out",
        use_models=False,
        remote=service,
        remote_options=RemoteSettings(concurrency=4),
        patient={"patient_id": "R1", "study_date": "2024-02-02"},
    )
    summary = run_convert(settings)
    assert summary.exit_code in (ExitCode.OK, ExitCode.SOME_FAILED)
    converted = [r for r in summary.results if r.status == "converted"]
    assert converted, [r.as_dict() for r in summary.results]
    for r in converted:
        assert r.labels["modality"]["source"] == "remote"
        assert r.labels["modality"]["value"] == "XC"
        ds = pydicom.dcmread(tmp_path / "out" / r.outputs[0], stop_before_pixels=True)
        assert ds.Modality == "XC"
        assert "remote" in ds.ContributingEquipmentSequence[0].ContributionDescription
    for r in summary.results:
        assert r.status in ("converted", "review"), r.as_dict()
    path = tmp_path / "out" / converted[0].outputs[0]
    errors, _ = dciodvfy(path)
    assert errors == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_service_fails_each_file_and_the_batch_ends(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/fhir"
    settings = ConvertSettings(
        inputs=[PHOTOS],
        output=tmp_path / "out",
        use_models=False,
        remote=url,
        remote_options=RemoteSettings(timeout=2.0, deadline=5.0),
    )
    summary = run_convert(settings)
    failed = [r for r in summary.results if r.status == "failed"]
    assert len(failed) == 4
    assert all(r.reason.startswith("remote") for r in failed), [r.reason for r in failed]
    assert all("\n" not in r.message and "Traceback" not in r.message for r in failed)
    assert summary.exit_code == ExitCode.FATAL  # nothing converted
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_classify_remote_prints_the_service_labels(service: str) -> None:
    import json

    from typer.testing import CliRunner

    from orthovision_cli.cli import app

    result = CliRunner().invoke(app, ["classify", str(PHOTOS), "--remote", service, "-f", "json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["pack"] == f"remote {service}"
    assert len(body["images"]) == 4
    for row in body["images"]:
        assert row["error"] is None
        assert row["labels"]["modality"]["source"] == "remote"
    # Mixed: the service answers modality only; the local pack the other tags.
    result = CliRunner().invoke(
        app, ["classify", str(PHOTOS), "--remote", service, "--remote-tag", "modality", "-f", "json"]
    )
    rows = json.loads(result.stdout)["images"]
    assert all(r["labels"]["modality"]["source"] == "remote" for r in rows)
    assert any(r["labels"]["body_part"]["source"].startswith("local") for r in rows)
