"""The wire's ``Matrix`` (float32 or float16, row-major) and ``IntMatrix`` as tuples of rows (no numpy)."""

from __future__ import annotations

import struct

from ecco_proto.ecco.v1 import ecco_pb2 as pb

Rows = tuple[tuple[float, ...], ...]
IntRows = tuple[tuple[int, ...], ...]


def _split(flat: tuple, rows: int, cols: int) -> tuple:
    return tuple(flat[i * cols : (i + 1) * cols] for i in range(rows))


def matrix_rows(matrix: pb.Matrix) -> Rows:
    """The rows of a row-major ``Matrix`` (float32 values or little-endian float16 bytes)."""
    n = matrix.rows * matrix.cols
    if matrix.float16_values:
        if len(matrix.float16_values) != 2 * n:
            size = len(matrix.float16_values)
            raise ValueError(f"Matrix has {size} float16 bytes for shape {matrix.rows}x{matrix.cols}")
        flat: tuple[float, ...] = struct.unpack(f"<{n}e", matrix.float16_values)
    else:
        flat = tuple(matrix.values)
        if len(flat) != n:
            raise ValueError(f"Matrix has {len(flat)} values for shape {matrix.rows}x{matrix.cols}")
    return _split(flat, matrix.rows, matrix.cols)


def int_rows(matrix: pb.IntMatrix) -> IntRows:
    """The rows of a row-major ``IntMatrix``."""
    flat = tuple(matrix.values)
    if len(flat) != matrix.rows * matrix.cols:
        raise ValueError(f"IntMatrix has {len(flat)} values for shape {matrix.rows}x{matrix.cols}")
    return _split(flat, matrix.rows, matrix.cols)
