"""The cached header encoder writes byte for byte what pydicom's dcmwrite writes, for every input
kind, both IODs, code sequences (dental views) and a non-ASCII character set; and a second
series of files (the cache warm) still matches."""

from __future__ import annotations

from pathlib import Path

import pytest
from make_inputs import make_all

from orthovision_cli.batch import analyse, pool
from orthovision_cli.batch.user import build_user_input
from orthovision_cli.batch.walk import find_inputs
from orthovision_cli.config import ConvertSettings
from orthovision_cli.dicom import writer
from orthovision_cli.dicom.iods.builders import build
from orthovision_cli.dicom.plan import VL_PHOTOGRAPHIC, plan_batch
from orthovision_cli.inputs.reader import load_pixels


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kinds")
    make_all(folder)
    return folder


@pytest.mark.parametrize(
    ("labels", "patient"),
    [
        ({"modality": "XC", "body_part": "HEAD", "protocol": "EV01"}, {"patient_name": "Müller^Jürgen"}),
        ({"modality": "XC", "body_part": "HEAD", "protocol": "IV07"}, {"patient_id": "P-7"}),
        ({"modality": "DX", "body_part": "JAW"}, {"patient_name": "Doe^Jane", "birth_date": "1990-02-03"}),
    ],
)
def test_cached_header_is_pydicoms(inputs: Path, tmp_path: Path, labels: dict, patient: dict) -> None:
    settings = ConvertSettings(
        inputs=[inputs], output=tmp_path, use_models=False, jobs=1, labels=labels, patient=patient
    )
    pool.init_worker(settings, build_user_input(settings))
    analysed = [analyse.analyse(f) for f in find_inputs([inputs], [], [])]
    items = [a.plan_input for a in analysed if a.plan_input is not None]
    assert len(items) >= 15
    writer._ENCODED.clear()
    checked = 0
    for _round in range(2):  # cold cache, then warm
        for plan in plan_batch(items, b"k" * 32):
            photo = plan.sop_class_uid == VL_PHOTOGRAPHIC
            for px in load_pixels(plan.input.probe, plan.input.labels.orientation_value, photo=photo):
                built = build(plan, px)
                assert writer.header_bytes(built) == writer.header_bytes_pydicom(built), plan.input.rel
                checked += 1
    assert checked >= 30
    assert writer._ENCODED  # the fast path was taken, not the fallback


def test_built_dataset_makes_the_elements_pydicom_makes(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BuiltDataset's direct set (issue 25) writes the same bytes as a plain pydicom Dataset, for
    every input kind, a dental view's code sequences and a non-ASCII name."""
    from pydicom.dataset import Dataset

    from orthovision_cli.dicom.iods import modules, views

    labels = {"modality": "XC", "body_part": "HEAD", "protocol": "EV01"}
    settings = ConvertSettings(
        inputs=[inputs],
        output=tmp_path,
        use_models=False,
        jobs=1,
        labels=labels,
        patient={"patient_name": "Müller^Jürgen"},
    )
    pool.init_worker(settings, build_user_input(settings))
    items = [
        a.plan_input for a in map(analyse.analyse, find_inputs([inputs], [], [])) if a.plan_input is not None
    ]

    fast_class = modules.BuiltDataset

    def encoded(plain: bool) -> list[bytes]:
        with monkeypatch.context() as m:
            if plain:
                m.setattr(modules, "BuiltDataset", Dataset)
                m.setattr(views, "BuiltDataset", Dataset)
            out = []
            for plan in plan_batch(items, b"k" * 32):
                photo = plan.sop_class_uid == VL_PHOTOGRAPHIC
                for px in load_pixels(plan.input.probe, plan.input.labels.orientation_value, photo=photo):
                    built = build(plan, px)
                    assert isinstance(built.dataset, fast_class) != plain
                    # The clock's values (the two builds may fall in two seconds): made equal.
                    built.dataset.ContributingEquipmentSequence[0].ContributionDateTime = "20260101000000"
                    built.dataset.InstanceCreationDate, built.dataset.InstanceCreationTime = (
                        "20260101",
                        "000000",
                    )
                    out.append(writer.header_bytes_pydicom(built))
        return out

    fast, plain = encoded(False), encoded(True)
    assert len(fast) >= 15 and fast == plain
