"""Hostile DICOM uploads: refused with a fixed 4xx message, fast, before any large allocation.

Every file starts as pydicom's shipped ``MR_small.dcm``; one thing is changed per case.
"""

from __future__ import annotations

import contextlib
import io
import struct
import time

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from hmss_ray.config import IOConfig
from hmss_ray.io import LimitExceeded, UnreadableVolume, volume_from_bytes
from hmss_ray.io.dicom_file import frame_size, transfer_syntax
from tests.dicom_helpers import shipped, zip_bytes

LIMITS = IOConfig(max_decompressed_mb=64, max_file_mb=64)
PATIENT = "PATIENT_DOE_JOHN"


def _save(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _mr(**tags) -> bytes:
    ds = pydicom.dcmread(shipped("MR_small.dcm"))
    for key, value in tags.items():
        setattr(ds, key, value)
    return _save(ds)


def _refused(data: bytes, error: type[Exception], words: str, seconds: float = 5.0) -> str:
    start = time.perf_counter()
    with pytest.raises(error, match=words) as caught:
        volume_from_bytes(data, LIMITS, "MR")
    assert time.perf_counter() - start < seconds
    text = str(caught.value)
    assert PATIENT not in text and "pydicom" not in text.lower()
    return text


@pytest.mark.parametrize("zeros_mib", [1, 50])
@pytest.mark.parametrize("zipped", [False, True])
def test_deflated_dataset_is_refused_before_it_is_inflated(zeros_mib: int, zipped: bool) -> None:
    ds = pydicom.dcmread(shipped("MR_small.dcm"))
    ds.add_new(0x00091010, "OB", bytes(zeros_mib * 2**20))  # inflates ~1000x its bytes
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = _save(ds)
    assert transfer_syntax(data) == DeflatedExplicitVRLittleEndian
    assert len(data) < zeros_mib * 2**20 // 100
    _refused(zip_bytes({"a.dcm": data}) if zipped else data, UnreadableVolume, "Deflated")


def _empty_elements(count: int, vr: bytes = b"LO") -> bytes:
    """MR_small with ``count`` empty private elements inserted before its pixel data."""
    data = _mr()
    extra = b"".join(
        struct.pack("<HH2sH", 0x0009, 0x1000 + i % 0xE000, vr, 0) for i in range(count)
    )
    at = data.find(b"\xe0\x7f\x10\x00")
    return data[:at] + extra + data[at:]


@pytest.mark.parametrize("vr", [b"LO", b"CS"])
@pytest.mark.parametrize("zipped", [False, True])
def test_a_file_of_many_empty_elements_is_refused_fast(vr: bytes, zipped: bool) -> None:
    data = _empty_elements(524288 if not zipped else 100000, vr)
    _refused(zip_bytes({"a.dcm": data}) if zipped else data, LimitExceeded, "max_dicom_elements")


def test_a_real_file_is_far_below_the_element_limit() -> None:
    volume = volume_from_bytes(_empty_elements(2000), LIMITS, "MR")
    assert volume.shape == (64, 64, 1)


def _raw_tag(data: bytes, group_element: bytes, vr: bytes, old: bytes, new: bytes) -> bytes:
    """Replace an element's value in the file bytes (pydicom refuses to write such values)."""
    head = group_element + vr
    before = head + struct.pack("<H", len(old)) + old
    assert before in data
    return data.replace(before, head + struct.pack("<H", len(new)) + new)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_raw_tag(_mr(NumberOfFrames="9"), b"\x28\x00\x08\x00", b"IS", b"9 ", b"abc "), "tags"),
        (
            _raw_tag(_mr(NumberOfFrames="9"), b"\x28\x00\x08\x00", b"IS", b"9 ", b"1e99"),
            "multi-frame|tags",
        ),
        (_mr(PixelSpacing=[0, 0]), "geometry"),
        (_mr(PixelSpacing=[-1, 1]), "geometry"),
        (
            _raw_tag(
                _mr(PixelSpacing=["1", "1"]), b"\x28\x00\x30\x00", b"DS", b"1\\1 ", b"nan\\nan "
            ),
            "geometry",
        ),
        (_mr(ImageOrientationPatient=[0, 0, 0, 0, 0, 0]), "geometry"),
        (_mr(ImageOrientationPatient=[1, 0, 0, 1, 0, 0]), "geometry"),  # parallel axes
        (_mr(Rows=0), "geometry"),
        (_mr(RescaleSlope="1e400"), "rescale|tags"),
    ],
)
def test_malformed_tags_are_a_4xx_not_a_crash(data: bytes, words: str) -> None:
    _refused(data, UnreadableVolume, words)


@pytest.mark.parametrize("where", ["central", "local"])
def test_a_zip_entry_with_a_bad_crc_is_refused_without_its_name(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(zip_bytes({f"{PATIENT}/IM1.dcm": _mr()}))
    if where == "central":  # both records carry the CRC; zipfile checks the central one
        data[data.find(b"PK\x01\x02") + 16] ^= 0xFF
    else:  # a flipped byte in the compressed data instead
        start = data.find(b"PK\x03\x04") + 30 + len(PATIENT) + 8
        data[start + 200] ^= 0xFF
    _refused(bytes(data), UnreadableVolume, "corrupt")
    assert PATIENT not in caplog.text


def test_compressed_frame_larger_than_its_header_is_refused() -> None:
    ds = pydicom.dcmread(shipped("MR_small_jp2klossless.dcm"))
    frame = ds.PixelData
    at = frame.find(b"\xff\x4f\xff\x51")
    assert frame_size(frame[at:]) == (int(ds.Rows), int(ds.Columns))
    big = bytearray(frame)
    struct.pack_into(">II", big, at + 8, 60000, 60000)  # SIZ: Xsiz, Ysiz
    ds.PixelData = bytes(big)
    _refused(_save(ds), UnreadableVolume, "declares 60000x60000")


def test_jpeg_start_of_frame_is_read() -> None:
    ds = pydicom.dcmread(shipped("JPEG-lossy.dcm"))
    from pydicom.encaps import generate_frames

    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame_size(frame) == (int(ds.Rows), int(ds.Columns))


def test_many_files_each_under_the_element_limit_exhaust_the_upload_budget() -> None:
    """4096 files of 9,999 elements would cost ~10 minutes; the upload's budget stops them."""
    limits = IOConfig(max_decompressed_mb=64, max_file_mb=64, max_dicom_elements=400)
    one = _empty_elements(250)  # MR_small's own ~150 elements + 250: under 400 per file
    volume_from_bytes(one, limits, "MR")  # one such file is fine
    many = zip_bytes({f"{k:03d}.dcm": one for k in range(300)})  # 300 x ~400 > 100 x 400
    start = time.perf_counter()
    with pytest.raises(LimitExceeded, match="in all"):
        volume_from_bytes(many, limits, "MR")
    assert time.perf_counter() - start < 10.0


@pytest.mark.parametrize("kind", ["zip", "file"])
def test_every_single_byte_corruption_is_a_4xx(kind: str) -> None:
    """Each byte of a zipped DICOM's first 400 (of a plain one's File Meta group and first
    elements: 128..400) set to 0xFF or 0x00 in turn: the answer
    is always our own error (found by fuzzing: a negative seek inside zipfile, a truncated File
    Meta group, a TransferSyntaxUID that is no transfer syntax)."""
    good = zip_bytes({"a.dcm": _mr()}) if kind == "zip" else _mr()
    for at in range(0 if kind == "zip" else 128, 400, 1 if kind == "zip" else 2):
        for value in (0xFF, 0x00):
            data = bytearray(good)
            data[at] = value
            with contextlib.suppress(UnreadableVolume):  # any other exception fails the test
                volume_from_bytes(bytes(data), LIMITS, "MR")


def test_truncated_meta_and_unknown_transfer_syntax_are_4xx() -> None:
    meta = _mr()
    for data in (meta[:140], meta[:150], _mr_syntax("1.2.3.4")):
        with pytest.raises(UnreadableVolume):
            volume_from_bytes(data, LIMITS, "MR")


def _mr_syntax(uid: str) -> bytes:
    ds = pydicom.dcmread(shipped("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = uid
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def test_multi_valued_patient_id_is_carried_as_values_not_as_python_text() -> None:
    from hmss_ray.io import volume_to_bytes

    data = _mr(PatientID=["A1", "B2"], OtherPatientIDs="x")
    volume = volume_from_bytes(data, LIMITS, "MR")
    assert volume.meta["dicom"].tags["PatientID"] == "A1\\B2"
    series = zip_bytes({"a.dcm": data})
    out = volume_to_bytes(volume_from_bytes(series, LIMITS, "MR"), "dicom")
    import zipfile

    with zipfile.ZipFile(io.BytesIO(out)) as archive:
        written = pydicom.dcmread(io.BytesIO(archive.read(archive.namelist()[0])))
    assert list(written.PatientID) == ["A1", "B2"]
