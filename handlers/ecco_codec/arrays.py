"""numpy arrays <-> the wire's ``Matrix`` (float32 or float16, row-major) and ``IntMatrix`` (int32)."""

from __future__ import annotations

import numpy as np

from ecco_proto.ecco.v1 import ecco_pb2 as pb

_INT32 = np.iinfo(np.int32)


def to_matrix(array: np.ndarray, *, float16: bool = False) -> pb.Matrix:
    """A 2-D array as a row-major ``Matrix``: packed float32 values, or little-endian float16 bytes."""
    values = np.asarray(array)
    if values.ndim != 2:
        raise ValueError(f"a Matrix is 2-D, got shape {values.shape}")
    rows, cols = values.shape
    if float16:
        return pb.Matrix(rows=rows, cols=cols, float16_values=values.astype("<f2").tobytes(order="C"))
    return pb.Matrix(rows=rows, cols=cols, values=values.astype(np.float32).ravel(order="C").tolist())


def from_matrix(matrix: pb.Matrix) -> np.ndarray:
    """The ``(rows, cols)`` float32 array of a ``Matrix`` (either encoding)."""
    return from_matrix_as(matrix, np.float32)


def from_matrix_as(matrix: pb.Matrix, dtype: type | str) -> np.ndarray:
    """``from_matrix`` in ``dtype`` (``np.float16`` keeps float16 bytes exact without a float32 copy)."""
    if matrix.float16_values:
        flat = np.frombuffer(matrix.float16_values, dtype="<f2").astype(dtype)
    else:
        flat = np.asarray(matrix.values, dtype=dtype)
    if flat.size != matrix.rows * matrix.cols:
        raise ValueError(f"Matrix has {flat.size} values for shape ({matrix.rows}, {matrix.cols})")
    return flat.reshape(matrix.rows, matrix.cols)


def to_int_matrix(array: np.ndarray) -> pb.IntMatrix:
    """A 2-D integer array (ids, ranks, indices: all < 2**31) as a row-major ``IntMatrix``."""
    values = np.asarray(array)
    if values.ndim != 2:
        raise ValueError(f"an IntMatrix is 2-D, got shape {values.shape}")
    if values.size and (values.min() < _INT32.min or values.max() > _INT32.max):
        raise ValueError("IntMatrix values must fit in int32")
    rows, cols = values.shape
    return pb.IntMatrix(rows=rows, cols=cols, values=values.astype(np.int32).ravel(order="C").tolist())


def from_int_matrix(matrix: pb.IntMatrix) -> np.ndarray:
    """The ``(rows, cols)`` int64 array of an ``IntMatrix``."""
    flat = np.asarray(matrix.values, dtype=np.int64)
    if flat.size != matrix.rows * matrix.cols:
        raise ValueError(f"IntMatrix has {flat.size} values for shape ({matrix.rows}, {matrix.cols})")
    return flat.reshape(matrix.rows, matrix.cols)
