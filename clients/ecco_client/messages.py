"""``ecco.v1`` reply messages -> the client's typed results, field by field from the dataclasses and the descriptors.

A dataclass field takes the proto field of the same name (its type hint decides the client type),
by the proto field's kind:

- an enum: its lower-case name (``"l2_normalized"``), None for 0 (``*_UNSPECIFIED``);
- a ``Matrix`` / ``IntMatrix``: a tuple of rows (``matrix_rows`` / ``int_rows``);
- any other message: the dataclass of the hint, decoded the same way; a message that is not set is
  None when the hint allows None, else decoded from its defaults;
- an ``optional`` scalar: its value, None when not set;
- a repeated field: a tuple, items converted as above;
- a map: a dict;
- any other scalar: its value.

The real exceptions are ``OVERRIDES``; a dataclass field with neither a proto field nor an override
raises ``TypeError`` naming it. Protobuf only: no numpy, no torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.descriptor import FieldDescriptor

from ecco_proto.fields import enum_name, value_type

from .matrices import int_rows, matrix_rows

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

#: an override: (the message, the message holding it or None) -> the dataclass field's value
Override = Callable[[Any, Any], Any]


def _first_row(m: Any, parent: Any) -> tuple[float, ...]:
    rows = matrix_rows(m.scores)
    return rows[0] if rows else ()


#: ``"ClientClass.field"`` -> its value
OVERRIDES: dict[str, Override] = {
    # the reply as received (for ``to_json``)
    "GenerateResult.message": lambda m, parent: m,
    "ExplainResult.message": lambda m, parent: m,
    # a streamed row is a (1, n_sources) matrix on the wire, one row here
    "RowEvent.scores": _first_row,
    # the watched tokens' texts are in the internals' token_texts
    "WatchedTokens.texts": lambda m, parent: tuple(parent.token_texts.get(i) for i in m.token_ids),
}


def _allows_none(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The dataclass's resolved type hints (computed once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _item(field: FieldDescriptor, value: Any, hint: Any, parent: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_name(field.enum_type, value)
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return value
    name = field.message_type.full_name
    if name == "ecco.v1.Matrix":
        return matrix_rows(value)
    if name == "ecco.v1.IntMatrix":
        return int_rows(value)
    return from_message(value, value_type(hint), parent)


def _field(message: Any, field: FieldDescriptor, hint: Any) -> Any:
    value = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return dict(value)
    if field.is_repeated:
        return tuple(_item(field, item, hint, message) for item in value)
    if field.has_presence and not message.HasField(field.name) and _allows_none(hint):
        return None
    return _item(field, value, hint, message)


def from_message(message: Any, cls: type[T], parent: Any = None) -> T:
    """The client dataclass ``cls`` of a reply message (``parent``: the message holding it, if any)."""
    fields = message.DESCRIPTOR.fields_by_name
    values: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        key = f"{cls.__name__}.{item.name}"
        if key in OVERRIDES:
            values[item.name] = OVERRIDES[key](message, parent)
        elif item.name in fields:
            values[item.name] = _field(message, fields[item.name], _hints(cls)[item.name])
        else:
            raise TypeError(f"{key} is not a field of {message.DESCRIPTOR.full_name}: map it in ecco_client.messages")
    return cls(**values)
