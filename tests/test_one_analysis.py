"""`classify` and `convert` share one analysis and one uncertainty policy: for every test image
they give the same labels, and `classify` lists for review exactly the files `convert` holds
back. (They used to differ: `classify` read no EXIF, fused remote and local labels its own way,
and counted unknown labels as uncertain where `convert` did not.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from testdata import DATA
from typer.testing import CliRunner

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.cli import app
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import NeedsReview
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.labels.policy import apply_policy, uncertain_tags

IMAGES = [
    p
    for p in sorted(DATA.rglob("*"))
    if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".jp2")
]


@pytest.mark.slow
def test_classify_and_convert_agree_on_every_test_image(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, p in enumerate(IMAGES):  # flat copies: the same bytes, no clash of names
        (folder / f"{i:03d}_{p.name}").write_bytes(p.read_bytes())
    res = CliRunner().invoke(app, ["classify", str(folder), "--format", "json"])
    assert res.exit_code in (0, 4), res.output
    classified = {Path(r["path"]).name: r for r in json.loads(res.stdout)["images"]}
    summary = run_convert(ConvertSettings(inputs=[folder], output=tmp_path / "out", dry_run=True, jobs=1))
    converted = {Path(r.path).name: r for r in summary.results}
    assert set(classified) == set(converted) and len(converted) == len(IMAGES)
    for name, row in classified.items():
        r = converted[name]
        if row["error"] is not None:
            assert r.status == "failed", name
            continue
        assert r.labels == row["labels"], name
        assert (r.status == "review") == bool(row["review"]), (name, r.status, row["review"])


def test_an_unknown_label_is_not_uncertain_a_weak_one_is() -> None:
    labels = Labels(
        modality=Label("modality", None, 0.0, "local", detail={"kind": "radiograph"}),
        protocol=Label("protocol", "EV15", 0.6, "local"),
        body_part=Label("body_part", "HEAD", 0.95, "local"),
    )
    assert uncertain_tags(labels, 0.8) == ["protocol"]
    with pytest.raises(NeedsReview, match="protocol=EV15"):
        apply_policy(labels, 0.8, "review", Path("x.jpg"))
    with pytest.raises(NeedsReview) as skipped:
        apply_policy(labels, 0.8, "skip", Path("x.jpg"))
    assert skipped.value.reason == "uncertain-skipped"
    kept = apply_policy(labels, 0.8, "convert", Path("x.jpg"))
    assert kept.value("protocol") is None and kept.protocol is not None
    assert kept.protocol.detail["dropped"] == "EV15"
    assert kept.value("body_part") == "HEAD" and kept.value("modality") is None
