"""Check a proto3-JSON value against a message descriptor, then fill the message from it.

``json_format``'s errors name fields inconsistently (nested "Failed to parse X field: ..." chains,
sometimes a path, sometimes not), it silently accepts a few wrong shapes (``"generation": []``), and it
runs a regular expression over every string (2 s for a 50 MB prompt). ``check_json`` gives every
problem one ``InvalidRequest`` naming the dotted wire path (``messages[1].content``,
``generation.max_new_tokens``) and the expected type, and returns a copy in which enum names are
matched case-insensitively (``"target": "contrastive"`` is accepted), numbers are numbers and every
string is valid Unicode; ``fill_message`` sets that checked copy on a message, with no second check.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from ecco_engine import InvalidRequest

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_T = FieldDescriptor
_INT_RANGES = {
    _T.TYPE_INT32: _INT32,
    _T.TYPE_SINT32: _INT32,
    _T.TYPE_SFIXED32: _INT32,
    _T.TYPE_UINT32: (0, 2**32 - 1),
    _T.TYPE_FIXED32: (0, 2**32 - 1),
    _T.TYPE_INT64: _INT64,
    _T.TYPE_SINT64: _INT64,
    _T.TYPE_SFIXED64: _INT64,
    _T.TYPE_UINT64: (0, 2**64 - 1),
    _T.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (_T.TYPE_FLOAT, _T.TYPE_DOUBLE)
_SPECIAL_FLOATS = ("NaN", "Infinity", "-Infinity")
#: the most characters of a client's value an error message repeats
SHOWN_CHARS = 80


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _shown(value: object) -> str:
    """``repr(value)``, cut to ``SHOWN_CHARS`` characters: an error never echoes a huge value back."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 3]}... ({len(text)} characters)"


def _check_int(value: Any, field: FieldDescriptor, path: str) -> int:
    low, high = _INT_RANGES[field.type]
    number: Any = value
    if isinstance(value, str):  # proto3 JSON allows quoted integers
        try:
            number = int(value.strip())
        except ValueError:
            raise InvalidRequest(path, f"must be an integer, got {_shown(value)}") from None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidRequest(path, f"must be an integer, got {_kind(value)} ({_shown(value)})")
    if not low <= number <= high:
        raise InvalidRequest(path, f"must be an integer in {low}..{high}, got {number}")
    return number


def _check_float(value: Any, path: str) -> Any:
    if isinstance(value, str):
        if value in _SPECIAL_FLOATS:
            return value
        try:
            return float(value)
        except ValueError:
            raise InvalidRequest(path, f"must be a number, got {_shown(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidRequest(path, f"must be a number, got {_kind(value)} ({_shown(value)})")
    return value


def _check_enum(value: Any, enum: EnumDescriptor, path: str) -> Any:
    names = [v.name for v in enum.values]
    if isinstance(value, str):
        for name in names:
            if name.lower() == value.lower():
                return name
    elif isinstance(value, int) and not isinstance(value, bool) and value in enum.values_by_number:
        return value
    shown = ", ".join(n for n in names if not n.endswith("_UNSPECIFIED"))
    raise InvalidRequest(path, f"must be one of {shown}, got {_shown(value)}")


def _check_single(value: Any, field: FieldDescriptor, path: str) -> Any:
    if field.type == _T.TYPE_MESSAGE:
        return check_json(value, field.message_type, path)
    if field.type == _T.TYPE_ENUM:
        return _check_enum(value, field.enum_type, path)
    if field.type == _T.TYPE_BOOL:
        if not isinstance(value, bool):
            raise InvalidRequest(path, f"must be true or false, got {_kind(value)} ({_shown(value)})")
        return value
    if field.type in (_T.TYPE_STRING, _T.TYPE_BYTES):
        if not isinstance(value, str):
            what = "a base64 string" if field.type == _T.TYPE_BYTES else "a string"
            raise InvalidRequest(path, f"must be {what}, got {_kind(value)} ({_shown(value)})")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidRequest(
                path, f"has an unpaired surrogate ({error.object[error.start]!a}) at {error.start}"
            ) from None
        return value
    if field.type in _FLOATS:
        return _check_float(value, path)
    return _check_int(value, field, path)


def check_json(value: Any, descriptor: Descriptor, path: str = "") -> dict[str, Any]:
    """Validate ``value`` as the JSON form of ``descriptor``; return it with enum names normalized.

    Raises ``InvalidRequest`` naming the dotted path of the first problem ("body" for the top).
    """
    if not isinstance(value, dict):
        raise InvalidRequest(path or "body", f"must be a JSON object, got {_kind(value)}")
    by_name: dict[str, FieldDescriptor] = {}
    for f in descriptor.fields:
        by_name[f.name] = f
        by_name[f.json_name] = f
    out: dict[str, Any] = {}
    oneofs_seen: dict[str, str] = {}
    fields_seen: set[str] = set()
    for key, item in value.items():
        field = by_name.get(key) if isinstance(key, str) else None
        if field is None:
            known = sorted({f.name for f in descriptor.fields})
            name = str(key)
            close = difflib.get_close_matches(name, list(by_name), n=1) if len(name) <= SHOWN_CHARS else []
            hint = f" (did you mean {by_name[close[0]].name!r}?)" if close else ""
            shown = name if len(name) <= SHOWN_CHARS else _shown(name)
            raise InvalidRequest(_join(path, shown), f"unknown field{hint}; known fields: {', '.join(known)}")
        here = _join(path, field.name)
        if field.name in fields_seen:
            raise InvalidRequest(here, "given twice (as snake_case and lowerCamelCase)")
        fields_seen.add(field.name)
        if item is None:  # proto3 JSON: null means "not set"
            continue
        oneof = field.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):  # "_x" oneofs are proto3 `optional`
            if oneof.name in oneofs_seen:
                raise InvalidRequest(
                    _join(path, oneof.name), f"give only one of {oneofs_seen[oneof.name]!r} and {field.name!r}"
                )
            oneofs_seen[oneof.name] = field.name
        if field.is_repeated:
            if not isinstance(item, list):
                raise InvalidRequest(here, f"must be an array, got {_kind(item)}")
            out[key] = [_check_single(v, field, f"{here}[{i}]") for i, v in enumerate(item)]
        else:
            out[key] = _check_single(item, field, here)
    return out


def _value(value: Any, field: FieldDescriptor) -> Any:
    """A checked single value as the message stores it (enum names -> numbers, "NaN" -> float)."""
    if field.type == _T.TYPE_ENUM:
        return field.enum_type.values_by_name[value].number if isinstance(value, str) else value
    if field.type in _FLOATS:
        return float(value)
    return value


def fill_message(checked: dict[str, Any], message: Message) -> None:
    """Set ``check_json``'s output on ``message`` (of the descriptor it was checked against).

    Request messages hold messages, enums, strings, booleans and numbers only (no maps, bytes or
    well-known types)."""
    by_name = {name: f for f in message.DESCRIPTOR.fields for name in (f.name, f.json_name)}
    for key, item in checked.items():
        field = by_name[key]
        target = getattr(message, field.name)
        if field.type == _T.TYPE_MESSAGE:
            for part in item if field.is_repeated else [item]:
                sub = target.add() if field.is_repeated else target
                sub.SetInParent()
                fill_message(part, sub)
        elif field.is_repeated:
            target.extend(_value(v, field) for v in item)
        else:
            setattr(message, field.name, _value(item, field))
