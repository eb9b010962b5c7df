"""Reading the proto3 JSON of ``ecco.v1`` messages as plain Python (no protobuf, no numpy).

The server writes replies with ``preserving_proto_field_name`` and every field without presence, but a
reply saved by another tool may omit defaults, so every reader here falls back to the proto3 default.
Floats: proto3 JSON writes non-finite numbers as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
they are read as ``None`` (a view shows them as "n/a", never as a color).
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

Json = dict[str, Any]


def number(value: Any) -> float | None:
    """A JSON float (or its proto3 string form) as a finite float, else None."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def numbers(values: Any) -> list[float | None]:
    """A repeated float field, non-finite entries as None."""
    return [number(v) for v in values or ()]


def matrix(message: Json | None) -> list[list[float | None]]:
    """A ``Matrix`` (packed float32 ``values`` or base64 little-endian float16 bytes) as rows; shape (rows, cols)."""
    if not message:
        return []
    rows, cols = int(message.get("rows", 0)), int(message.get("cols", 0))
    n = rows * cols
    half = message.get("float16_values") or message.get("float16Values") or ""
    if half:
        raw = base64.b64decode(half)
        if len(raw) != 2 * n:
            raise ValueError(f"Matrix has {len(raw)} float16 bytes for shape {rows}x{cols}")
        flat = numbers(struct.unpack(f"<{n}e", raw))
    else:
        flat = numbers(message.get("values"))
        if len(flat) != n:
            raise ValueError(f"Matrix has {len(flat)} values for shape {rows}x{cols}")
    return [flat[i * cols : (i + 1) * cols] for i in range(rows)]


def int_matrix(message: Json | None) -> list[list[int]]:
    """An ``IntMatrix`` as rows; shape (rows, cols)."""
    if not message:
        return []
    rows, cols = int(message.get("rows", 0)), int(message.get("cols", 0))
    flat = [int(v) for v in message.get("values") or ()]
    if len(flat) != rows * cols:
        raise ValueError(f"IntMatrix has {len(flat)} values for shape {rows}x{cols}")
    return [flat[i * cols : (i + 1) * cols] for i in range(rows)]


def ints(values: Any) -> list[int]:
    """A repeated integer field (int64 arrive as strings in proto3 JSON)."""
    return [int(v) for v in values or ()]


def enum(value: Any) -> str | None:
    """An enum as its lower-case name; None for ``*_UNSPECIFIED`` / 0 / absent."""
    if value is None or value == 0 or str(value).endswith("UNSPECIFIED"):
        return None
    return str(value).lower()


def field(message: Json, name: str, default: Any = None) -> Any:
    """A field by its proto name, or by its lowerCamelCase JSON name (both are valid proto3 JSON)."""
    if name in message:
        return message[name]
    head, *rest = name.split("_")
    return message.get(head + "".join(part.title() for part in rest), default)
