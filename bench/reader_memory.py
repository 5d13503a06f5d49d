"""Peak memory and time of reading one upload, hostile or valid, against the ``io`` limits.

Each case runs in a fresh interpreter: the upload is loaded from disk and the readers imported,
then the peak resident set (Linux ``VmHWM``) is reset and ``volume_from_bytes`` runs; the growth
of the peak over the resident set before it is what reading that upload cost. The figures back
the memory formula in ``docs/security/limits.md``. No Ray, no network: ``python -m
bench.reader_memory --json bench/results/reader_memory.json``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench import MB, command_line, machine_facts, print_header, table, write_json

NAME = "reader_memory"
MEASURE = """
import json, sys, time
from hmss_ray.config import IOConfig
from hmss_ray.io import volume_from_bytes
import numpy as np
from hmss_ray.io import Volume, volume_to_bytes
warm = Volume(np.ones((4, 4, 4), np.int16), np.eye(4))  # libraries' code paged in: not counted
for fmt in ("nifti", "mha", "nrrd", "dicom"):
    volume_from_bytes(volume_to_bytes(warm, fmt), IOConfig(), "warm-up")
def kib(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0])
data = open(sys.argv[1], "rb").read()
limits = IOConfig(**json.loads(sys.argv[2]))
open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM
before, start = kib("VmRSS"), time.perf_counter()
try:
    volume = volume_from_bytes(data, limits, "MR")
    out = f"read {volume.shape} {volume.array.dtype}"
except Exception as exc:
    out = f"{type(exc).__name__}: {str(exc)[:80]}"
print(json.dumps({"seconds": time.perf_counter() - start,
                  "growth_mib": (kib("VmHWM") - before) / 1024, "answer": out}))
"""


def _nifti(shape, dtype=np.int16, edits=(), fill=1) -> bytes:
    import nibabel as nib

    raw = bytearray(nib.Nifti1Image(np.full(shape, fill, dtype), np.eye(4)).to_bytes())
    for offset, fmt, value in edits:
        struct.pack_into(fmt, raw, offset, value)
    return bytes(raw)


def _claims(shape, real_mib: int) -> bytes:
    head = bytearray(_nifti((2, 2, 2))[:352])
    struct.pack_into("<4h", head, 40, 3, *shape)
    return gzip.compress(bytes(head) + bytes(real_mib * MB), 1)


def _itk(shape, suffix: str) -> bytes:
    from hmss_ray.io import Volume, volume_to_bytes

    rng = np.random.default_rng(0)
    volume = Volume(rng.integers(0, 1000, shape).astype(np.int16), np.eye(4))
    return volume_to_bytes(volume, suffix)


def _dicom(change: Callable | None = None, tail: bytes = b"") -> bytes:
    import pydicom

    from tests.dicom_helpers import shipped

    ds = pydicom.dcmread(shipped("MR_small.dcm"))
    if change:
        change(ds)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    at = data.find(b"\xe0\x7f\x10\x00")
    return data[:at] + tail + data[at:]


def _deflated(ds) -> None:
    ds.add_new(0x00091010, "OB", bytes(600 * MB))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"


def _elements(count: int) -> bytes:
    return b"".join(struct.pack("<HH2sH", 9, 0x1000 + i % 0xE000, b"LO", 0) for i in range(count))


def _series_zip(slices: int) -> bytes:
    import zipfile

    from tests.dicom_helpers import write_series

    with tempfile.TemporaryDirectory() as tmp:
        write_series(Path(tmp), [2.0 * k for k in range(slices)])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(tmp).glob("*.dcm")):
                archive.write(path, path.name)
        return buffer.getvalue()


def cases() -> dict[str, Callable[[], bytes]]:
    """Name -> upload bytes. Hostile first; then valid uploads of known decoded size."""
    nrrd_head = b"NRRD0004\n" + b"# pad\n" * 12000 + b"type: uchar\ndimension: 3\nsizes: 8 8 8\n"
    return {
        "nifti_gz_vox_offset_400MiB": lambda: gzip.compress(
            _nifti((8, 8, 8), edits=[(108, "<f", 400.0 * MB)])
        ),
        "nifti_gz_claims_256MiB_holds_8MiB": lambda: _claims((512, 512, 512), 8),
        "nifti_gz_zeros_1GiB_over_max_voxels": lambda: _claims((1024, 1024, 512), 1024),
        "nifti_gz_zeros_512MiB_within_limits": lambda: _claims((512, 512, 1024), 512),
        "nrrd_data_file_after_72KB_of_comments": lambda: (
            nrrd_head + b"encoding: raw\ndata file: /proc/self/environ\n\n"
        ),
        "mha_claims_2048^3": lambda: (
            b"ObjectType = Image\nNDims = 3\nDimSize = 2048 2048 2048\n"
            b"ElementType = MET_SHORT\nElementDataFile = LOCAL\n" + bytes(64)
        ),
        "dicom_deflated_600MiB": lambda: _dicom(_deflated),
        "dicom_524k_empty_elements": lambda: _dicom(tail=_elements(524288)),
        "valid_nifti_gz_256x256x128_int16": lambda: gzip.compress(
            _nifti((256, 256, 128), fill=7), 1
        ),
        "valid_nifti_256x256x128_int16": lambda: _nifti((256, 256, 128), fill=7),
        "valid_mha_256x256x128_int16": lambda: _itk((256, 256, 128), "mha"),
        "valid_nrrd_256x256x128_int16": lambda: _itk((256, 256, 128), "nrrd"),
        "valid_dicom_zip_64_slices_64x64": lambda: _series_zip(64),
    }


def run(limits: dict) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="hmss-bench-") as tmp:
        for name, make in cases().items():
            path = Path(tmp) / name
            path.write_bytes(make())
            done = subprocess.run(
                [sys.executable, "-c", MEASURE, str(path), json.dumps(limits)],
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            )
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"case": name, "upload_bytes": path.stat().st_size, **row})
            path.unlink()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reader_memory", description=__doc__)
    parser.add_argument("--json", default=f"outputs/bench/{NAME}.json", help="where figures go")
    parser.add_argument("--max-decompressed-mb", type=float, default=2048.0)
    args = parser.parse_args(argv)
    facts = machine_facts()
    print_header("readers: peak memory per upload", facts)
    limits = {"max_decompressed_mb": args.max_decompressed_mb}
    start = time.perf_counter()
    rows = run(limits)
    print(
        table(
            ["case", "upload KiB", "seconds", "peak growth MiB", "answer"],
            [
                [
                    r["case"],
                    f"{r['upload_bytes'] / 1024:.1f}",
                    f"{r['seconds']:.3f}",
                    f"{r['growth_mib']:.1f}",
                    r["answer"],
                ]
                for r in rows
            ],
            left=(0, 4),
        )
    )
    payload = {
        "command": command_line(),
        "date": facts["date"],
        "machine": facts,
        "io_limits": limits,
        "cases": rows,
        "wall_s": time.perf_counter() - start,
    }
    print(f"\nwrote {write_json(args.json, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
