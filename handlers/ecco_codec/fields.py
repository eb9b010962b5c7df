"""Wire request messages -> engine dataclasses, field by field, from the descriptors and the dataclasses.

A proto field maps to the engine field of the same name (``dataclasses.fields`` / type hints decide the
engine type), by its kind:

- an ``optional`` scalar: its value when set, else the engine default;
- an enum: the engine enum member of the same name (``TargetKind.LOG_PROBABILITY``) or, for a ``str``
  engine field, the lower-case name (``"magnitude"``); 0 (``*_UNSPECIFIED``) is the engine default;
- a repeated field: a tuple, or the engine default when empty; items are converted like single values;
- a message: the engine dataclass of the field's type, decoded the same way (errors at its wire path);
- any other scalar: its value.

The real exceptions are the tables below: wire-only fields, oneofs, and per-field overrides. Every
error is an ``InvalidRequest`` naming the dotted wire path (``internals.interventions[0].mode``).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from enum import Enum
from functools import cache
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from ecco_engine import InvalidRequest
from ecco_proto.fields import enum_name, enum_names, enum_number, is_optional, value_type

#: read by ``decode_request`` (kind, float16, stream) or by an override (skip, with ``methods``)
WIRE_ONLY = frozenset(
    {
        "ecco.v1.ExplainRequest.kind",
        "ecco.v1.ExplainRequest.float16",
        "ecco.v1.ExplainRequest.stream",
        "ecco.v1.AttributionParams.skip",
    }
)
#: oneof -> the engine field that takes the value of whichever member is set
ONEOFS = {"ecco.v1.AttributionParams.contrast": "contrast_token"}


def _methods(message: Any, path: str) -> dict[str, Any]:
    """``methods`` with ``skip``: skip computes no attribution (``()``), so it takes no methods."""
    skip_path = path.rsplit(".", 1)[0] + ".skip"
    if message.skip and message.methods:
        raise InvalidRequest(skip_path, f"skips attribution, so give no methods (got {list(message.methods)})")
    return {"methods": tuple(message.methods)} if message.methods or message.skip else {}


def _token_refs(name: str) -> Callable[[Any, str], dict[str, Any]]:
    """A list of ``WatchToken`` / ``TokenRef`` items (oneof ``token``) -> the engine's ``str | int`` (text or id)."""

    def decode(message: Any, path: str) -> dict[str, Any]:
        out: list[str | int] = []
        for i, item in enumerate(getattr(message, name)):
            which = item.WhichOneof("token")
            if which is None:
                raise InvalidRequest(f"{path}[{i}]", "give the token's text or its id")
            out.append(getattr(item, which))
        return {name: tuple(out)} if out else {}

    return decode


#: proto field -> its decoding (the message holding it, the field's wire path) -> engine keyword arguments
OVERRIDES: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "ecco.v1.AttributionParams.methods": _methods,
    "ecco.v1.InternalsParams.watch": _token_refs("watch"),
    "ecco.v1.AttributionParams.contrast_tokens": _token_refs("contrast_tokens"),
}


def reraise_at(error: InvalidRequest, path: str) -> InvalidRequest:
    """The same error (same class) with its field replaced by the wire path ``path``."""
    return type(error)(path, error.reason)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@cache
def _engine_types(cls: type) -> dict[str, Any]:
    """Field name -> the engine type of one value of that field (``AttributionParams.target``: ``TargetKind``)."""
    return {name: value_type(hint) for name, hint in typing.get_type_hints(cls).items()}


def engine_enum(number: int, enum: EnumDescriptor, kind: Any, path: str) -> Any:
    """The engine value of a set enum number: ``kind[NAME]`` for an engine ``Enum``, else the lower-case name."""
    name = enum_name(enum, number)
    if name is None:
        if number == 0:
            raise InvalidRequest(path, f"name a {enum.name.lower()}: {' or '.join(enum_names(enum))}")
        raise InvalidRequest(path, f"unknown enum value {number}")
    return kind[name.upper()] if isinstance(kind, type) and issubclass(kind, Enum) else name


def wire_enum(enum: EnumDescriptor, value: Enum | str) -> Any:
    """The number of an engine enum member (by name) or an engine string (``"magnitude"``)."""
    return enum_number(enum, value.name if isinstance(value, Enum) else value, enum.name)


def _value(value: Any, field: FieldDescriptor, kind: Any, path: str) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return engine_enum(value, field.enum_type, kind, path)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_engine(value, kind, path)
    return value


def _field(message: Any, field: FieldDescriptor, kind: Any, path: str) -> dict[str, Any]:
    """The engine keyword argument of one mechanically mapped field ({} for "engine default")."""
    value = getattr(message, field.name)
    if field.is_repeated:
        return {field.name: tuple(_value(v, field, kind, f"{path}[{i}]") for i, v in enumerate(value))} if value else {}
    if field.type == FieldDescriptor.TYPE_MESSAGE or is_optional(field):
        return {field.name: _value(value, field, kind, path)} if message.HasField(field.name) else {}
    if field.type == FieldDescriptor.TYPE_ENUM and value == 0:  # *_UNSPECIFIED: engine default
        return {}
    return {field.name: _value(value, field, kind, path)}


def to_engine(message: Message, cls: type, path: str = "") -> Any:
    """The engine dataclass ``cls`` for a wire message at wire path ``path`` (omitted fields: engine defaults)."""
    kinds = _engine_types(cls)
    kwargs: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        here = _join(path, field.name)
        oneof = field.containing_oneof
        if field.full_name in WIRE_ONLY:
            continue
        if field.full_name in OVERRIDES:
            kwargs |= OVERRIDES[field.full_name](message, here)
        elif oneof is not None and oneof.full_name in ONEOFS:
            if message.WhichOneof(oneof.name) == field.name:
                kwargs[ONEOFS[oneof.full_name]] = getattr(message, field.name)
        elif field.name in kinds:
            kwargs |= _field(message, field, kinds[field.name], here)
        else:
            raise TypeError(f"wire field {field.full_name} has no field in {cls.__name__}: map it in ecco_codec.fields")
    try:
        return cls(**kwargs)
    except InvalidRequest as error:
        raise reraise_at(error, _join(path, _relative(error.field, path))) from None


def _relative(field: str, path: str) -> str:
    """An item's error field relative to the item: list items name their errors after the list
    (``ChatMessage`` raises ``messages.role``, decoded at ``messages[0]``: ``role``)."""
    if path.endswith("]"):
        stem = path.rsplit(".", 1)[-1].split("[", 1)[0]
        return field.removeprefix(f"{stem}.")
    return field
