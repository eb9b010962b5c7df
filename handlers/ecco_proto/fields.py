"""What the ``ecco.v1`` descriptors say about a field: the one enum helper and the keyword -> message filler.

Protobuf only (no torch): the codec (wire <-> engine types) and the client (keyword arguments -> request)
both derive their field handling from the descriptors through this module, so a new proto field needs
no hand-written mapping on either side::

    enum_number(pb.TargetKind.DESCRIPTOR, "log-probability", "target")   # -> 2 (any case, '-' for '_')
    enum_name(pb.TargetKind.DESCRIPTOR, 2)                               # -> "log_probability"
    fill(pb.GenerationParams(), {"max_new_tokens": 4, "seed": None})     # None leaves a field out
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

#: converts one item given for a message field (a tuple, a string ...) to that message; keyed by the
#: message's full name (``"ecco.v1.ChatMessage"``). A dict is always filled field by field.
ItemBuilders = Mapping[str, Callable[[Any], Message]]
M = TypeVar("M", bound=Message)


def enum_name(enum: EnumDescriptor, number: int) -> str | None:
    """The lower-case name of ``number`` (``"probability"``); None for 0 (``*_UNSPECIFIED``) or an unknown number."""
    value = enum.values_by_number.get(number)
    return None if value is None or number == 0 else value.name.lower()


def enum_names(enum: EnumDescriptor) -> tuple[str, ...]:
    """The enum's names without ``*_UNSPECIFIED``, upper case as in the proto (``("SET", "SCALE")``)."""
    return tuple(v.name for v in enum.values if v.number != 0)


def enum_number(enum: EnumDescriptor, value: str | int | None, what: str) -> int:
    """The number of an enum value given by name (any case, ``-`` for ``_``) or number; None gives 0.

    An unknown name raises ``ValueError("<what> must be one of <names>, got <value>")``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    found = enum.values_by_name.get(value.strip().upper().replace("-", "_"))
    if found is None:
        allowed = ", ".join(name.lower() for name in enum_names(enum))
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    return int(found.number)


def is_optional(field: FieldDescriptor) -> bool:
    """A scalar field with presence (proto3 ``optional`` or a oneof member): unset means "server default"."""
    return field.has_presence and not field.is_repeated and field.type != FieldDescriptor.TYPE_MESSAGE


def _item(field: FieldDescriptor, value: Any, items: ItemBuilders) -> Any:
    """One value for ``field`` (an item of a repeated field, or the single value) in the message's terms."""
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_number(field.enum_type, value, field.name)
    if field.type != FieldDescriptor.TYPE_MESSAGE or isinstance(value, Message):
        return value
    if isinstance(value, Mapping):
        return fill(GetMessageClass(field.message_type)(), value, items)
    build = items.get(field.message_type.full_name)
    if build is None:
        raise TypeError(f"{field.name}: give a {field.message_type.name} message or a dict, got {value!r}")
    return build(value)


def fill(message: M, values: Mapping[str, Any], items: ItemBuilders | None = None) -> M:
    """Set ``message``'s fields from ``values`` (proto field names) and return it.

    ``None`` or an empty list leaves a field out (server default); enums take names or numbers; a
    message field takes a message or a dict of its fields; ``items`` builds messages from anything
    else (``("user", "Hi")`` -> ``ChatMessage``). An unknown name raises ``TypeError``."""
    items = items or {}
    known = message.DESCRIPTOR.fields_by_name
    for name, value in values.items():
        field = known.get(name)
        if field is None:
            raise TypeError(f"{message.DESCRIPTOR.name} has no field {name!r}; fields: {', '.join(known)}")
        if value is None:
            continue
        if field.is_repeated:
            converted = [_item(field, v, items) for v in _as_list(value, name)]
            getattr(message, name).extend(converted)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(_item(field, value, items))
        else:
            setattr(message, name, _item(field, value, items))
    return message


def _as_list(value: Any, name: str) -> Iterable[Any]:
    if isinstance(value, (str, bytes, Mapping)):
        raise TypeError(f"{name} is a list, got {value!r}")
    return value


def value_type(hint: Any) -> Any:
    """The type of one value of a dataclass field's type hint: ``X`` of ``X | None``, ``tuple[X, ...]``
    and ``tuple[X, ...] | None`` (shared by the codec and the client's result mapping)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return value_type(rest[0]) if len(rest) == 1 else hint
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return value_type(args[0])
    return hint
