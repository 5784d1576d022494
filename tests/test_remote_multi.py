"""Several IG services at once (`--remote` repeated, or per tag): real services on 127.0.0.1,
one agreeing, one disagreeing, one down."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom
import pytest

pytest.importorskip("starlette")

from conftest import SAMPLE

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings, RemoteSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.labels.local import load_pack
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.remote.multi import fuse_services, parse_remote
from orthovision_cli.server.app import create_app
from orthovision_cli.server.config import ServerConfig
from orthovision_cli.server.runner import serve_in_thread

PHOTOS = SAMPLE / "photos"
# The other model's view: one the embedded pack is sure of for none of the sample photos, so
# that the intraoral frontal photos it is sure of (IV07) disagree.
OTHER_VIEW = "IV24"


class OtherModel:
    """A second model that sees every photograph as a maxillary occlusal view (IV24), sure of
    it: a service that disagrees with the embedded pack."""

    name = "other-model"
    version = "1"

    def __init__(self) -> None:
        self.pack = load_pack(None)

    def classify(self, image: Any) -> Labels:
        labels = self.pack.classify(image)
        return labels.with_label(Label("protocol", OTHER_VIEW, 0.97, "other-model"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, str]]:
    with (
        serve_in_thread(create_app(load_pack(None), ServerConfig(workers=2))) as a,
        serve_in_thread(create_app(load_pack(None), ServerConfig(workers=2))) as b,
        serve_in_thread(create_app(OtherModel(), ServerConfig(workers=2))) as c,
    ):
        yield {"a": a, "b": b, "c": c, "down": f"http://127.0.0.1:{_closed_port()}/fhir"}


def _run(tmp_path: Path, remote: list[str] | str, name: str) -> Any:
    settings = ConvertSettings(
        inputs=[PHOTOS],
        output=tmp_path / name,
        use_models=False,
        remote=remote,
        remote_options=RemoteSettings(timeout=5.0, deadline=20.0, concurrency=2),
        patient={"patient_id": "M1", "study_date": "2024-03-03"},
    )
    return run_convert(settings)


def test_agreeing_services_and_one_down(services: dict[str, str], tmp_path: Path) -> None:
    alone = _run(tmp_path, services["a"], "alone")
    fused = _run(tmp_path, [services["a"], services["b"], services["down"]], "fused")
    by_name = {Path(r.path).name: r for r in fused.results}
    assert {Path(r.path).name: r.status for r in alone.results} == {n: r.status for n, r in by_name.items()}
    assert fused.exit_code == alone.exit_code
    converted = [r for r in fused.results if r.status == "converted"]
    assert converted
    for r in converted:
        lab = r.labels["modality"]  # known for every photograph, by both services
        assert lab["source"].startswith("remote:127.0.0.1:")
        others = lab["detail"]["alternatives"]
        assert len(others) == 1 and others[0]["value"] == lab["value"]  # the other service agrees
        assert others[0]["source"] != lab["source"]
        assert lab["detail"]["services_down"][0]["service"].startswith("remote:127.0.0.1:")
        ds = pydicom.dcmread(tmp_path / "fused" / r.outputs[0], stop_before_pixels=True)
        assert "remote:127.0.0.1:" in ds.ContributingEquipmentSequence[0].ContributionDescription


def test_disagreeing_services_send_to_review(services: dict[str, str], tmp_path: Path) -> None:
    alone = {Path(r.path).name: r for r in _run(tmp_path, services["a"], "alone").results}
    fused = {Path(r.path).name: r for r in _run(tmp_path, [services["a"], services["c"]], "fused").results}
    sure = [
        n
        for n, r in alone.items()
        if r.status == "converted"
        and r.labels["protocol"]
        and r.labels["protocol"]["value"] not in (None, OTHER_VIEW)
        and r.labels["protocol"]["confidence"] >= 0.8
    ]
    assert sure, "the embedded pack is sure of some view"
    # Where the pack knows no view, the other model's sure answer stands alone: converted.
    unknown = [
        n
        for n, r in alone.items()
        if r.status == "converted" and r.labels["protocol"] and r.labels["protocol"]["value"] is None
    ]
    for name in unknown:
        assert fused[name].status == "converted" and fused[name].labels["protocol"]["value"] == OTHER_VIEW
    for name in sure:
        r = fused[name]
        assert r.status == "review", r.as_dict()
        assert "protocol=" in r.message and " vs " in r.message, r.message
        assert r.labels["protocol"]["confidence"] == 0.0
        assert {d["value"] for d in r.labels["protocol"]["detail"]["disagreement"]} == {
            alone[name].labels["protocol"]["value"],
            OTHER_VIEW,
        }


def test_per_tag_service(services: dict[str, str], tmp_path: Path) -> None:
    # The other model is asked for the view only; the embedded one for everything.
    summary = _run(tmp_path, [f"protocol={services['c']}", services["a"]], "per-tag")
    for r in summary.results:
        if r.labels.get("modality"):
            assert r.labels["modality"]["detail"].get("alternatives") is None  # one answer only


def test_all_services_down_fails_each_file(tmp_path: Path) -> None:
    down = [f"http://127.0.0.1:{_closed_port()}/fhir", f"http://127.0.0.1:{_closed_port()}/fhir"]
    summary = _run(tmp_path, down, "down")
    assert summary.exit_code == ExitCode.FATAL
    assert all(r.status == "failed" and r.reason.startswith("remote") for r in summary.results)


def test_fuse_and_parse_units() -> None:
    assert parse_remote("http://x/fhir") == ("http://x/fhir", [])
    assert parse_remote("protocol,body_part=https://x/fhir?a=b") == (
        "https://x/fhir?a=b",
        ["protocol", "body_part"],
    )
    a = Labels(protocol=Label("protocol", "EV01", 0.9, "remote:a"))
    b = Labels(protocol=Label("protocol", "EV02", 0.5, "remote:b"))
    c = Labels(protocol=Label("protocol", "EV02", 0.85, "remote:c"))
    won = fuse_services([a, b], 0.8, [])
    assert won.protocol is not None and (won.protocol.value, won.protocol.confidence) == ("EV01", 0.9)
    torn = fuse_services([a, c], 0.8, [])
    assert torn.protocol is not None and torn.protocol.confidence == 0.0
    assert torn.protocol.source == "remote:a vs remote:c"
    assert replace(torn.protocol, confidence=1.0).value == "EV01"


def test_classify_fuses_several_services_as_convert_does(services: dict[str, str], tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    remote = [services["a"], services["c"]]
    # classify uses the embedded models beside the services, as convert does by default.
    settings = ConvertSettings(
        inputs=[PHOTOS],
        output=tmp_path / "fused",
        remote=remote,
        remote_options=RemoteSettings(timeout=5.0, deadline=20.0, concurrency=2),
    )
    fused = {Path(r.path).name: r for r in run_convert(settings).results}
    args = [sys.executable, "-m", "orthovision_cli", "classify", str(PHOTOS), "--format", "json"]
    for url in remote:
        args += ["--remote", url]
    proc = subprocess.run(
        [*args, "--timeout", "5", "--deadline", "20"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode in (0, 4), proc.stderr
    images = {Path(i["path"]).name: i for i in json.loads(proc.stdout)["images"]}
    assert set(images) == set(fused)
    for name, r in fused.items():
        got = images[name]
        for tag in ("modality", "protocol", "body_part"):
            want = r.labels.get(tag) or {}
            assert (got["labels"].get(tag) or {}).get("value") == want.get("value"), (name, tag)
        if r.status == "review":  # what convert holds back, classify lists for review
            assert got["review"], name
