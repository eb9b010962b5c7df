"""Engine results -> ``ecco.v1`` messages, field by field, from the descriptors and the engine's attributes.

A message field takes the engine attribute of the same name (a dataclass field or a property, e.g.
``GenerationResult.generated_text``), converted by the field's kind:

- ``None``: the field stays unset (an optional scalar absent, a message not set, a list empty);
- an enum: the number of the engine member or lower-case string of the same name (``wire_enum``);
- a ``Matrix`` from a 2-D float array: packed float32, or float16 bytes when the request asked for
  float16 and every value fits float16 (finite, ``|x| <= 65504``);
- an ``IntMatrix`` from a 2-D integer array (packed int32);
- any other message: the engine value (its own dataclass) encoded the same way;
- a repeated field: a list of items converted as above (a float array ravelled to float32);
- a scalar: its value (numpy scalars become Python ``int`` / ``float`` / ``bool``).

The real exceptions are the tables below: wire-only fields and per-field overrides (derived values,
engine arrays split into per-item messages, token texts). A wire field with neither an engine
attribute nor an entry here raises ``TypeError`` naming it, so a new result field cannot be dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .arrays import to_int_matrix, to_matrix
from .fields import wire_enum
from .token_texts import result_token_ids, token_texts

FLOAT16_MAX = float(np.finfo(np.float16).max)
M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Encoding:
    """How the request asked for its reply: ``float16`` matrices, and the ``tokenizer`` (anything with
    ``decode(ids, skip_special_tokens=...)``) that names the internals' token ids; None: no names."""

    float16: bool = False
    tokenizer: Any = None


class Chain:
    """The attributes of several objects as one source, the first that has a name winning
    (``Chain(served, explanation, explanation.generation)`` for an ``ExplainResponse``)."""

    def __init__(self, *sources: object) -> None:
        self._sources = sources

    def __getattr__(self, name: str) -> Any:
        for source in self._sources:
            if hasattr(source, name):
                return getattr(source, name)
        raise AttributeError(name)


def floats_matrix(array: np.ndarray, encoding: Encoding) -> pb.Matrix:
    """float16 bytes when asked for and lossless in range (finite, ``|x| <= 65504``); else float32."""
    values = np.asarray(array)
    fits = values.size == 0 or float(np.abs(values).max()) <= FLOAT16_MAX
    return to_matrix(values, float16=encoding.float16 and fits)


# ---- the exceptions ------------------------------------------------------------------------------
#: set by ``encode_error`` only, never from an engine result
WIRE_ONLY = frozenset({"ecco.v1.GenerateResponse.error", "ecco.v1.ExplainResponse.error"})

#: an override: (the engine object, the encoding) -> the field's value (None: unset)
Override = Callable[[Any, Encoding], Any]


def _predictions(lp: Any, encoding: Encoding) -> list[pb.PositionPredictions]:
    """``LayerPredictions``' ``(n_positions, n_layers + 1, top_k)`` arrays as one message per position."""
    return [
        pb.PositionPredictions(
            position=position,
            token_ids=to_int_matrix(lp.token_ids[i]),
            probabilities=floats_matrix(lp.probabilities[i], encoding),
        )
        for i, position in enumerate(lp.positions)
    ]


def _activation_layers(a: Any, encoding: Encoding) -> list[pb.LayerActivations]:
    """``NeuronActivations``' ``(n_layers, n_positions, ...)`` arrays as one message per block; full
    values are float16 in the engine and always travel as float16 bytes."""
    layers = []
    for i, layer in enumerate(a.layers):
        item = pb.LayerActivations(layer=layer)
        if a.values is not None:
            item.values.CopyFrom(to_matrix(a.values[i], float16=True))
        else:
            assert a.top_indices is not None and a.top_values is not None  # NeuronActivations' contract
            item.top_neurons.CopyFrom(to_int_matrix(a.top_indices[i]))
            item.top_values.CopyFrom(floats_matrix(a.top_values[i], encoding))
        layers.append(item)
    return layers


def _token_texts(result: Any, encoding: Encoding) -> dict[int, str] | None:
    return None if encoding.tokenizer is None else token_texts(encoding.tokenizer, result_token_ids(result))


#: wire field -> its value from the engine object holding it
OVERRIDES: dict[str, Override] = {
    # the scores travel as the request asked, without the range check of other float matrices
    "ecco.v1.Attribution.scores": lambda a, e: to_matrix(a.scores, float16=e.float16),
    "ecco.v1.Attribution.n_sources": lambda a, e: int(a.scores.shape[1]),
    # small matrices: always float32, whatever the request asked for
    "ecco.v1.Faithfulness.comprehensiveness": lambda f, e: to_matrix(f.comprehensiveness),
    "ecco.v1.Faithfulness.sufficiency": lambda f, e: to_matrix(f.sufficiency),
    "ecco.v1.AttributionRow.scores": lambda r, e: to_matrix(
        np.asarray(r.scores, dtype=np.float32).reshape(1, -1), float16=e.float16
    ),
    # the engine's streamed token carries the token's fields itself
    "ecco.v1.GeneratedToken.token": lambda t, e: to_message(pb.Token, t, e),
    "ecco.v1.LayerPredictions.predictions": _predictions,
    "ecco.v1.NeuronActivations.layers": _activation_layers,
    "ecco.v1.NeuronActivations.order": lambda a, e: a.order if a.values is None else None,  # full values: none
    "ecco.v1.InternalsResult.token_texts": _token_texts,
}


# ---- the mechanical mapping ----------------------------------------------------------------------
_FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return wire_enum(field.enum_type, value)
    if field.type in _FLOATS:
        return float(value)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return bool(value)
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64):
        return int(value)
    return value


def _message(field: FieldDescriptor, value: Any, encoding: Encoding) -> Message:
    if isinstance(value, Message):
        return value
    name = field.message_type.full_name
    if name == "ecco.v1.Matrix":
        return floats_matrix(value, encoding)
    if name == "ecco.v1.IntMatrix":
        return to_int_matrix(value)
    return to_message(GetMessageClass(field.message_type), value, encoding)


def _repeated(field: FieldDescriptor, value: Any, encoding: Encoding) -> list[Any]:
    if isinstance(value, np.ndarray):
        dtype = np.float32 if field.type in _FLOATS else value.dtype
        return value.astype(dtype).ravel().tolist()
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return [_message(field, item, encoding) for item in value]
    return [_scalar(field, item) for item in value]


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _value(field: FieldDescriptor, value: Any, encoding: Encoding) -> Any:
    if _is_map(field):
        return dict(value)
    if field.is_repeated:
        return _repeated(field, value, encoding)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(field, value, encoding)
    return _scalar(field, value)


def to_message(message_class: type[M], source: Any, encoding: Encoding) -> M:
    """The ``message_class`` message of an engine object (or a ``Chain`` of them), field by field."""
    values: dict[str, Any] = {}
    later: dict[str, Any] = {}
    for field in message_class.DESCRIPTOR.fields:
        if field.full_name in WIRE_ONLY:
            continue
        if field.full_name in OVERRIDES:
            value = OVERRIDES[field.full_name](source, encoding)
            if value is not None and not isinstance(value, Message | list | dict):
                value = _scalar(field, value)
        elif hasattr(source, field.name):
            value = getattr(source, field.name)
            value = None if value is None else _value(field, value, encoding)
        else:
            kind = type(source).__name__
            raise TypeError(
                f"wire field {field.full_name} has no attribute in {kind}: map it in ecco_codec.result_fields"
            )
        if value is None:
            continue
        if _is_map(field) or isinstance(value, Message):
            later[field.name] = value
        else:
            values[field.name] = value
    message = message_class(**values)
    for name, value in later.items():  # copied in after construction: a map keeps its order, so its bytes
        part = getattr(message, name)
        if isinstance(value, Message):
            part.SetInParent()  # set even when empty (a zero Cost is still sent)
            part.CopyFrom(value)
        else:
            part.update(value)
    return message
