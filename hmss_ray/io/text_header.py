"""NRRD and MetaImage headers of untrusted uploads, parsed whole by us and rewritten minimal.

Both formats may name other files for their voxels (NRRD ``data file``/``datafile``, with
``LIST`` or a pattern; MetaImage ``ElementDataFile`` other than ``LOCAL``): read on a server, an
upload could make it read its own disk. So ITK never sees an uploaded header. The header is read
whole (refused above :data:`MAX_HEADER_BYTES`), every field is checked against what this module
knows, and ITK gets a new header written from the parsed numbers alone (type, grid, geometry, byte
order, encoding), followed by the upload's own inline data. Any field that names a file is refused;
fields that carry no geometry (comments, key/value pairs, labels) are dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from hmss_ray.io.volume import UnreadableVolume

MAX_HEADER_BYTES = 65536  # a real NRRD / MetaImage header is a few hundred bytes
NRRD_TYPES = {  # teem's type names (nrrdType) -> bytes per voxel
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char"), 1),
    **dict.fromkeys(("uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int"), 2),
    **dict.fromkeys(("int16", "int16_t", "ushort", "unsigned short"), 2),
    **dict.fromkeys(("unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int"), 4),
    **dict.fromkeys(("uint32", "uint32_t", "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long"), 8),
    **dict.fromkeys(("signed long long int", "int64", "int64_t", "ulonglong"), 8),
    **dict.fromkeys(("unsigned long long", "unsigned long long int", "uint64"), 8),
    **dict.fromkeys(("uint64_t", "double"), 8),
}
NRRD_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip"}
NRRD_SPACES = {  # spatial 3D spaces only (the "-time" ones add an axis)
    "right-anterior-superior", "ras", "left-anterior-superior", "las",
    "left-posterior-superior", "lps", "scanner-xyz", "3d-right-handed", "3drh",
    "3d-left-handed", "3dlh",
}  # fmt: skip
# fields that carry nothing ITK needs for a scalar volume: dropped, never passed on
NRRD_DROPPED = {
    "content", "thicknesses", "axismins", "axismaxs", "centers", "centerings", "labels",
    "units", "spaceunits", "sampleunits", "oldmin", "oldmax", "min", "max", "kinds",
    "measurementframe", "number",
}  # fmt: skip
MET_TYPES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
    "MET_UINT": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}  # fmt: skip
_VECTOR = re.compile(r"\(([^()]*)\)")


@dataclass(frozen=True)
class SafeHeader:
    """An upload's header as ITK will see it, and where the upload's inline data starts."""

    text: bytes  # the rewritten header, ending where the data starts
    data_offset: int  # index of the first data byte in the upload
    shape: tuple[int, int, int]  # (x, y, z) as declared
    itemsize: int
    compressed: bool


def _malformed(fmt: str) -> UnreadableVolume:
    return UnreadableVolume(f"the {fmt} header is malformed or uses a feature this server refuses")


def _header_lines(data: bytes, fmt: str, last) -> tuple[list[str], int]:
    """The header's lines (up to the one ``last`` accepts) and the offset just after them."""
    lines, start = [], 0
    while True:
        end = data.find(b"\n", start, MAX_HEADER_BYTES + 1)
        if end < 0:
            raise UnreadableVolume(
                f"the {fmt} header has no end in its first {MAX_HEADER_BYTES // 1024} KiB: send "
                "one self-contained file with the data after a short header"
            )
        line = data[start:end].decode("latin-1").rstrip("\r")
        start = end + 1
        if last(line):
            return [*lines, line], start
        lines.append(line)


def _numbers(text: str, count: int, fmt: str) -> list[float]:
    """``count`` finite numbers separated by spaces or commas."""
    parts = text.replace(",", " ").split()
    if len(parts) != count:
        raise _malformed(fmt)
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise _malformed(fmt) from None
    if any(not math.isfinite(v) for v in values):
        raise _malformed(fmt)
    return values


def _shape(text: str, fmt: str) -> tuple[int, int, int]:
    if not re.fullmatch(r"\s*\d+\s+\d+\s+\d+\s*", text):
        raise UnreadableVolume(f"the {fmt} is not a 3D scalar volume")
    x, y, z = (int(v) for v in text.split())
    if min(x, y, z) < 1:
        raise _malformed(fmt)
    return x, y, z


def _vector(values: list[float]) -> str:
    return "(" + ",".join(repr(float(v)) for v in values) + ")"


def _nrrd_key(line: str) -> str:
    return re.sub(r"[\s_-]", "", line.split(":", 1)[0]).lower()


def parse_nrrd(data: bytes) -> SafeHeader:
    """An uploaded ``.nrrd``'s header, checked whole, as a minimal header with inline data."""
    if not re.fullmatch(rb"NRRD000[1-5]\r?", data[: data.find(b"\n")]):
        raise _malformed("NRRD")
    lines, offset = _header_lines(data, "NRRD", lambda line: not line.strip())
    fields: dict[str, str] = {}
    for line in lines[1:-1]:
        if line.startswith("#") or ":=" in line:
            continue  # comments and key/value pairs: never passed on
        if ":" not in line:
            raise _malformed("NRRD")
        key, value = _nrrd_key(line), line.split(":", 1)[1].strip()
        if key == "datafile":
            raise UnreadableVolume(
                "the NRRD names a separate data file: send one self-contained .nrrd file"
            )
        if key in fields or (key in ("blocksize", "lineskip", "byteskip") and value != "0"):
            raise _malformed("NRRD")
        fields[key] = value
    return _nrrd_rewrite(fields, offset)


def _nrrd_rewrite(fields: dict[str, str], offset: int) -> SafeHeader:
    unknown = set(fields) - NRRD_DROPPED - {"lineskip", "byteskip", "blocksize"}
    unknown -= {"type", "dimension", "space", "spacedimension", "sizes", "spacedirections"}
    unknown -= {"spaceorigin", "spacings", "endian", "encoding"}
    kind = fields.get("type", "").lower()
    encoding = NRRD_ENCODINGS.get(fields.get("encoding", "").lower())
    if unknown or kind not in NRRD_TYPES or encoding is None:
        raise _malformed("NRRD")
    if fields.get("dimension") != "3":
        raise UnreadableVolume("the NRRD is not a 3D scalar volume")
    shape = _shape(fields.get("sizes", ""), "NRRD")
    endian = fields.get("endian", "little").lower()
    if endian not in ("little", "big"):
        raise _malformed("NRRD")
    out = [f"NRRD0004\ntype: {kind}\ndimension: 3\nsizes: {shape[0]} {shape[1]} {shape[2]}"]
    space = fields.get("space", "").lower()
    if (space and space not in NRRD_SPACES) or fields.get("spacedimension", "3") != "3":
        raise _malformed("NRRD")
    if (space or "spaceorigin" in fields) and "spacedirections" not in fields:
        raise _malformed("NRRD")  # teem refuses it too; ITK would drop the geometry silently
    if "spacedirections" in fields:
        axes = _VECTOR.findall(fields["spacedirections"])
        if len(axes) != 3 or _VECTOR.sub("", fields["spacedirections"]).strip():
            raise _malformed("NRRD")
        columns = [_numbers(axis, 3, "NRRD") for axis in axes]
        out.append(f"space: {space}" if space else "space dimension: 3")
        out.append("space directions: " + " ".join(_vector(c) for c in columns))
        if "spaceorigin" in fields:
            found = _VECTOR.fullmatch(fields["spaceorigin"].strip())
            if found is None:
                raise _malformed("NRRD")
            out.append("space origin: " + _vector(_numbers(found.group(1), 3, "NRRD")))
    elif "spacings" in fields:
        out.append("spacings: " + _joined(_numbers(fields["spacings"], 3, "NRRD")))
    out += [f"endian: {endian}", f"encoding: {encoding}", "", ""]
    text = "\n".join(out).encode("ascii")
    return SafeHeader(text, offset, shape, NRRD_TYPES[kind], encoding != "raw")


def parse_metaimage(data: bytes) -> SafeHeader:
    """An uploaded ``.mha``'s header, checked whole, as a minimal header with inline data."""
    lines, offset = _header_lines(data, "MetaImage", _is_data_file)
    fields: dict[str, str] = {}
    for line in lines:
        if "=" not in line:
            raise _malformed("MetaImage")
        key, value = (part.strip() for part in line.split("=", 1))
        fields.setdefault(key.lower(), value)  # MetaIO keeps the first of a repeated field
    if fields["elementdatafile"].lower() != "local":
        raise UnreadableVolume(
            "the MetaImage names a separate data file: its header needs 'ElementDataFile = "
            "LOCAL' (send one self-contained .mha file)"
        )
    return _metaimage_rewrite(fields, offset)


def _is_data_file(line: str) -> bool:
    return line.split("=", 1)[0].strip().lower() == "elementdatafile"


def _metaimage_rewrite(fields: dict[str, str], offset: int) -> SafeHeader:
    kind = fields.get("elementtype", "")
    if fields.get("objecttype", "Image").lower() != "image" or kind not in MET_TYPES:
        raise _malformed("MetaImage")
    if fields.get("ndims") != "3" or fields.get("elementnumberofchannels", "1") != "1":
        raise UnreadableVolume("the MetaImage is not a 3D scalar volume")
    shape = _shape(fields.get("dimsize", ""), "MetaImage")
    flags = {}
    for key in ("binarydata", "compresseddata", "binarydatabyteordermsb", "elementbyteordermsb"):
        value = fields.get(key, "True" if key == "binarydata" else "False").lower()
        if value not in ("true", "false"):
            raise _malformed("MetaImage")
        flags[key] = value == "true"
    if not flags["binarydata"]:
        raise _malformed("MetaImage")
    msb = flags["binarydatabyteordermsb"] or flags["elementbyteordermsb"]
    out = ["ObjectType = Image", "NDims = 3", "BinaryData = True"]
    out += [f"BinaryDataByteOrderMSB = {msb}", f"CompressedData = {flags['compresseddata']}"]
    matrix = fields.get("transformmatrix") or fields.get("rotation") or fields.get("orientation")
    if matrix is not None:
        out.append("TransformMatrix = " + _joined(_numbers(matrix, 9, "MetaImage")))
    origin = fields.get("offset") or fields.get("origin") or fields.get("position")
    if origin is not None:
        out.append("Offset = " + _joined(_numbers(origin, 3, "MetaImage")))
    spacing = fields.get("elementspacing") or fields.get("elementsize")
    if spacing is not None:
        out.append("ElementSpacing = " + _joined(_numbers(spacing, 3, "MetaImage")))
    out += [f"DimSize = {shape[0]} {shape[1]} {shape[2]}", f"ElementType = {kind}"]
    text = "\n".join(out).encode("ascii")  # CompressedDataSize and the data file: by the caller
    return SafeHeader(text, offset, shape, MET_TYPES[kind], flags["compresseddata"])


def metaimage_text(header: SafeHeader, data_bytes: int) -> bytes:
    """The MetaImage header's last lines: the compressed size is the bytes actually sent."""
    size = f"\nCompressedDataSize = {data_bytes}" if header.compressed else ""
    return header.text + f"{size}\nElementDataFile = LOCAL\n".encode("ascii")


def _joined(values: list[float]) -> str:
    return " ".join(repr(float(v)) for v in values)
