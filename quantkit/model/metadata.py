"""An ONNX file's ``metadata_props``, read without loading its graph.

The runtime checks a model's CPU target (:mod:`quantkit.isa`) every time it opens one, the
bench child included, whose peak memory is the figure it reports: parsing the file with
onnx would hold a second copy of every weight there (176 MB for u2net) and import onnx
into a process that otherwise has only numpy and the runtime. So the top-level protobuf
fields of the ModelProto are walked and everything but ``metadata_props`` (field 14,
key/value string pairs) is skipped by seeking: a few reads, whatever the model's size.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import BinaryIO

_METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {key = 1; value = 2}
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def read_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` of the ONNX file at ``path``; empty if it has none or cannot be read
    (the runtime that loads it next says why, in its own words)."""
    try:
        with path.open("rb") as handle:
            return _walk(handle)
    except (OSError, ValueError):
        return {}


def _walk(handle: BinaryIO) -> dict[str, str]:
    end = handle.seek(0, 2)
    handle.seek(0)
    props: dict[str, str] = {}
    while handle.tell() < end:
        key = _varint(handle)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            _varint(handle)
        elif wire in (_FIXED64, _FIXED32):
            handle.seek(8 if wire == _FIXED64 else 4, 1)
        elif wire == _BYTES:
            length = _varint(handle)
            if handle.tell() + length > end:
                raise ValueError("truncated field")
            if field == _METADATA_PROPS:
                entry = _entry(BytesIO(handle.read(length)), length)
                props[entry[0]] = entry[1]
            else:
                handle.seek(length, 1)  # the graph, with every weight: skipped, not read
        else:
            raise ValueError(f"wire type {wire}: not an ONNX file")
    return props


def _varint(handle: BinaryIO) -> int:
    value = shift = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise ValueError("truncated varint")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _entry(buffer: BinaryIO, end: int) -> tuple[str, str]:
    """A StringStringEntryProto's (key, value)."""
    strings = {1: "", 2: ""}
    while buffer.tell() < end:
        key = _varint(buffer)
        if key & 7 != _BYTES:
            raise ValueError("not a metadata entry")
        payload = buffer.read(_varint(buffer))
        if key >> 3 in strings:
            strings[key >> 3] = payload.decode("utf-8", "replace")
    return strings[1], strings[2]
