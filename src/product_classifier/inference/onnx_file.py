"""Is this file an ONNX model at all? Answered from its protobuf framing, without onnxruntime.

``product-classifier serve`` checks the model before it starts the server, to fail with one
readable line instead of a traceback per worker. Building onnxruntime sessions for that check
meant loading the model twice on every start (the workers load it again), and importing
onnxruntime and numpy into a process that is replaced by the server right after. The
serving runtime has no protobuf library (``onnx`` is a training dependency), and the question
is narrow: do the top-level fields of a ``ModelProto`` frame the file exactly, with an
``ir_version`` and a ``graph``? That catches empty, truncated and non-ONNX files; what only a
session can find (an operator it lacks, a wrong input contract) the workers still report.
"""

from __future__ import annotations

from pathlib import Path

# ModelProto field numbers (onnx.proto): ir_version = 1 (varint), graph = 7 (message).
_IR_VERSION = 1
_GRAPH = 7
# Protobuf wire types: varint, 64-bit, length-delimited, 32-bit (groups, 3 and 4, are unused).
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Truncated(Exception):
    pass


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise _Truncated
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def onnx_framing_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be an ONNX model, or None when its framing is that of one."""
    data = Path(path).read_bytes()
    if not data:
        return "the file is empty"
    seen: set[int] = set()
    position = 0
    try:
        while position < len(data):
            start = position
            key, position = _varint(data, position)
            number, wire = key >> 3, key & 7
            if wire == _VARINT:
                _, position = _varint(data, position)
            elif wire == _LEN:
                length, position = _varint(data, position)
                position += length
            elif wire in (_I64, _I32):
                position += 8 if wire == _I64 else 4
            else:
                return f"not an ONNX protobuf (wire type {wire} at byte {start})"
            if number == 0:
                return f"not an ONNX protobuf (field 0 at byte {start})"
            if position > len(data):
                raise _Truncated
            seen.add(number)
    except _Truncated:
        return f"truncated: the ONNX protobuf runs past the end of the file ({len(data)} bytes)"
    missing = [
        name for name, n in (("ir_version", _IR_VERSION), ("graph", _GRAPH)) if n not in seen
    ]
    if missing:
        return f"not an ONNX model: no {' and no '.join(missing)}"
    return None
