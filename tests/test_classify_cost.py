"""Work the local classifier must not do (issue 12: CPU per photo), on the open test images of
tests/data/classify (NOTICE.md there). The labels themselves are pinned by test_classify_kinds;
models/tools/compare_labels.py checks a change against every open image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.labels.local import load_pack, radiograph_labels
from orthovision_cli.labels.local.classifier import LocalClassifier

DATA = Path(__file__).resolve().parent / "data" / "classify"


@pytest.fixture(scope="module")
def clf() -> LocalClassifier:
    return load_pack()


def _count_feature_runs(clf: LocalClassifier, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    assert clf.features is not None
    sizes: list[int] = []
    real = clf.features.run

    def counted(x: np.ndarray, outputs: Any = None) -> list[np.ndarray]:
        sizes.append(len(x))
        return real(x, outputs)

    monkeypatch.setattr(clf.features, "run", counted)
    return sizes


def test_a_turned_intraoral_view_reuses_the_rotation_look(
    clf: LocalClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The view head needs the upright picture: it is one of the four looks the rotation head
    # took already, so the features model sees 4 pictures, not 5.
    p = tmp_path / "turned.png"
    Image.open(DATA / "io_frontal.jpg").rotate(90, expand=True).save(p)  # 90 counter-clockwise
    sizes = _count_feature_runs(clf, monkeypatch)
    labels = clf.classify(SourceImage(p, rel="x.png"))
    assert labels.value("protocol") == "IV07", labels.as_dict()
    assert labels.value("orientation") == "90", labels.as_dict()
    assert sum(sizes) == 4, sizes


def test_only_radiographs_read_the_file_header(clf: LocalClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stored size and dpi (a film's physical size) matter to the radiograph kinds only.
    read: list[Any] = []
    real = radiograph_labels.read_header

    def counted(path: Any) -> Any:
        read.append(path)
        return real(path)

    monkeypatch.setattr(radiograph_labels, "read_header", counted)
    face = DATA / "face_rest.jpg"
    assert clf.classify(SourceImage(face, rel="x.jpg")).value("modality") == "XC"
    assert read == []
    pano = DATA / "panoramic.jpg"
    assert clf.classify(SourceImage(pano, rel="x.jpg")).value("modality") == "PX"
    assert read == [pano]
