"""`dicomdir` finds the header elements it needs by walking an Explicit VR Little Endian file's
bytes (issue 25, `send/media_fast.py`): what it finds is what pydicom's `dcmread` gives, element
for element, on every kind of file the converter writes and on files written by others; anything
else (another transfer syntax, a truncated header, bytes that are not DICOM) is left to pydicom,
and no input makes the walk raise. The PATIENT, STUDY and SERIES records are then copied from the
instance's bytes, byte for byte what pydicom encodes; a key to invent is left to pydicom."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pydicom
import pytest
from conftest import require_tool
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.send import media_headers
from orthovision_cli.send.media_fast import header_elements
from orthovision_cli.send.media_keys import header_tags, invent_keys, record
from orthovision_cli.send.media_records import encode_record, level_records

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"
WANTED = frozenset(header_tags())


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every kind the converter writes: VL Photographic (JPEG kept), Secondary Capture of a film
    scan (8 and 16 bit, native pixels), a radiograph."""
    out = tmp_path_factory.mktemp("out")
    patient = {"patient_id": "P-7", "patient_name": "Müller, Jörg", "accession": "A1"}
    settings = ConvertSettings(
        inputs=[SAMPLES], output=out, use_models=False, labels={"modality": "OT"}, patient=patient, jobs=1
    )
    run_convert(settings)
    files = sorted(out.rglob("*.dcm"))
    assert len(files) >= 5
    return files


def by_pydicom(path: Path) -> tuple[list[object], str]:
    """The wanted elements as dcmread gives them, converted (tag, VR, value), and the syntax."""
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=sorted(WANTED))
    return _converted(ds), str(ds.file_meta.TransferSyntaxUID)


def walked(data: bytes) -> tuple[list[object], str] | None:
    got = header_elements(data, WANTED)
    return None if got is None else (_converted(Dataset(got[0])), got[1])  # type: ignore[arg-type]


def _converted(ds: Dataset) -> list[object]:
    return [(t, ds[t].VR, ds[t].value) for t in sorted(WANTED) if t in ds]


def test_the_walk_finds_what_dcmread_finds_in_the_files_the_converter_writes(converted: list[Path]) -> None:
    syntaxes = set()
    for path in converted:
        got = walked(path.read_bytes())
        assert got is not None, path
        assert got == by_pydicom(path), path
        syntaxes.add(got[1])
    assert len(syntaxes) >= 2  # JPEG kept and native pixels


def test_the_header_is_the_same_whichever_reader_found_it(
    converted: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def read(path: Path) -> object:
        h = media_headers.read_header(path)
        assert not isinstance(h, str)
        return h.keys, h.image, h.invented, _converted(h.dataset())  # raw or not, the same values

    fast = [read(p) for p in converted]
    monkeypatch.setattr(media_headers, "header_elements", lambda data, wanted: None)
    assert [read(p) for p in converted] == fast


def test_a_file_written_by_dcmtk(tmp_path: Path) -> None:
    require_tool("img2dcm")
    dest = tmp_path / "img2dcm.dcm"
    subprocess.run(
        ["img2dcm", str(SAMPLES / "photos/005_03.jpg"), str(dest)], check=True, capture_output=True
    )
    got = walked(dest.read_bytes())
    assert got is not None and got == by_pydicom(dest)


def _with_sequences(
    tmp_path: Path, undefined: bool, syntax: str = pydicom.uid.ExplicitVRLittleEndian
) -> Path:
    """A file with sequences (nested, of undefined length or not) before and among the wanted
    elements, and after them."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    inner = Dataset()
    inner.CodeValue = "T-11170"
    inner.CodeMeaning = "Maxilla"
    deeper = Dataset()
    deeper.CodeValue = "X"
    inner.ModifierCodeSequence = Sequence([deeper])
    ds.IconImageSequence = Sequence([Dataset()])  # (0088,0200): after every wanted tag
    ds.AnatomicRegionSequence = Sequence([inner, inner])  # (0008,2218): among them
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = "Müller^Jörg"
    ds.PatientID = "X1"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.5"
    ds.Modality = "OT"
    ds.InstanceNumber = 7
    for holder, keyword in (
        (ds, "AnatomicRegionSequence"),
        (inner, "ModifierCodeSequence"),
        (ds, "IconImageSequence"),
    ):
        holder[keyword].is_undefined_length = undefined
        for item in holder[keyword].value:
            item.is_undefined_length_sequence_item = undefined
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(syntax)
    path = tmp_path / f"seq-{undefined}-{syntax}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("undefined", [False, True])
def test_sequences_are_stepped_over(tmp_path: Path, undefined: bool) -> None:
    path = _with_sequences(tmp_path, undefined)
    if undefined:
        assert b"\xfe\xff\xdd\xe0" in path.read_bytes()  # a sequence delimiter: undefined lengths
    got = walked(path.read_bytes())
    assert got is not None and got == by_pydicom(path)
    values: list[object] = [element[2] for element in got[0]]  # type: ignore[index]
    assert values[:3] == ["ISO_IR 192", "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"]


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_other_transfer_syntaxes_are_left_to_pydicom(tmp_path: Path, syntax: str) -> None:
    other = _with_sequences(tmp_path, False, syntax)
    assert header_elements(other.read_bytes(), WANTED) is None
    header = media_headers.read_header(other)
    assert not isinstance(header, str) and header.keys[3] == "1.2.3.4"


def test_a_header_cut_short_is_left_to_pydicom(converted: list[Path]) -> None:
    data = converted[0].read_bytes()
    end = data.index(b"\x20\x00\x0e\x00")  # inside the header: at the Series Instance UID
    for cut in (100, 140, end + 3, end + 10):
        assert header_elements(data[:cut], WANTED) is None


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_no_bytes_make_the_walk_raise(data: st.DataObject) -> None:
    """Any file (a real header with bytes changed, cut or added) gives elements or None."""
    real = _REAL[data.draw(st.integers(0, len(_REAL) - 1))]
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(real) - 1), st.integers(0, 255)), max_size=8))
    buf = bytearray(real)
    for at, value in edits:
        buf[at] = value
    cut = data.draw(st.integers(0, len(buf)))
    got = header_elements(bytes(buf[:cut]) + data.draw(st.binary(max_size=16)), WANTED)
    assert got is None or (isinstance(got, tuple) and set(got[0]) <= WANTED)


def _real_headers() -> list[bytes]:
    out = []
    for undefined in (False, True):
        buf = io.BytesIO()
        ds = Dataset()
        ds.SOPInstanceUID = "1.2.3.4"
        ds.AnatomicRegionSequence = Sequence([Dataset()])
        ds["AnatomicRegionSequence"].is_undefined_length = undefined
        ds.PatientID = "X1"
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.7")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(pydicom.uid.ExplicitVRLittleEndian)
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


_REAL = _real_headers()


def _pydicom_records(header: media_headers.Header) -> list[bytearray]:
    ds = header.dataset()
    keyed, _ = invent_keys(ds)
    return [encode_record(record(level, ds, keyed)) for level in range(3)]


def test_level_records_are_what_pydicom_encodes(converted: list[Path], tmp_path: Path) -> None:
    """The PATIENT, STUDY and SERIES records copied from an instance's bytes (`level_records`)
    are byte for byte pydicom's, for every kind the converter writes and a non-ASCII name."""
    paths = [*converted, _with_sequences(tmp_path, True)]
    direct = 0
    for path in paths:
        header = media_headers.read_header(path)
        assert not isinstance(header, str)
        got = level_records({e.tag: e for e in header.elements}, header.image[3])
        if got is not None:
            direct += 1
            assert got == _pydicom_records(header), path
    # Those without a Study Time (a film scan has no capture time: 000000 is invented) and the
    # sequence file (no Study Date) go pydicom's way; the photographs' records are copied.
    assert direct >= 3


def test_a_key_to_invent_is_left_to_pydicom(tmp_path: Path) -> None:
    path = _with_sequences(tmp_path, False)  # no Study Date, Time or ID
    header = media_headers.read_header(path)
    assert not isinstance(header, str)
    assert level_records({e.tag: e for e in header.elements}, header.image[3]) is None
    ds = pydicom.dcmread(path)
    for keyword, value in (
        ("StudyDate", "20200101"),
        ("StudyTime", "101010"),
        ("StudyID", "7"),
        ("SeriesNumber", 2),
    ):
        setattr(ds, keyword, value)
    full = tmp_path / "full.dcm"
    ds.save_as(full)
    header = media_headers.read_header(full)
    assert not isinstance(header, str)
    got = level_records({e.tag: e for e in header.elements}, header.image[3])
    assert got is not None and got == _pydicom_records(header)
    assert "Müller".encode() in got[0]  # the name's bytes as the instance has them (UTF-8)


def test_a_large_file_is_read_only_as_far_as_its_header(
    converted: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file larger than WHOLE: only its first HEAD bytes are read for the walk, which finds
    its header there; the Header is the one read whole."""
    want = [media_headers.read_header(p) for p in converted]
    monkeypatch.setattr(media_headers, "WHOLE", 256)
    monkeypatch.setattr(media_headers, "HEAD", 4096)
    seen: list[tuple[int, bool]] = []
    real = media_headers.header_elements

    def spy(data: bytes, wanted: frozenset[int]) -> object:
        got = real(data, wanted)
        seen.append((len(data), got is not None))
        return got

    monkeypatch.setattr(media_headers, "header_elements", spy)
    got = [media_headers.read_header(p) for p in converted]
    assert [(h.keys, h.image) for h in got] == [(h.keys, h.image) for h in want]  # type: ignore[union-attr]
    assert all(n <= 4096 for n, _ in seen) and all(fast for _, fast in seen)
