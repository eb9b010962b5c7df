"""Check a proto3-JSON value against a message descriptor before ``json_format.ParseDict`` sees it.

``json_format``'s errors name fields inconsistently (nested "Failed to parse X field: ..." chains,
sometimes a path, sometimes not) and it silently accepts a few wrong shapes (``"generation": []``).
This walk gives every problem one ``InvalidRequest`` naming the dotted wire path
(``messages[1].content``, ``generation.max_new_tokens``) and the expected type, and returns a copy
in which enum names are matched case-insensitively (``"target": "contrastive"`` is accepted).
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

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


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _check_int(value: Any, field: FieldDescriptor, path: str) -> int:
    low, high = _INT_RANGES[field.type]
    number: Any = value
    if isinstance(value, str):  # proto3 JSON allows quoted integers
        try:
            number = int(value.strip())
        except ValueError:
            raise InvalidRequest(path, f"must be an integer, got {value!r}") from None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidRequest(path, f"must be an integer, got {_kind(value)} ({value!r})")
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
            raise InvalidRequest(path, f"must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidRequest(path, f"must be a number, got {_kind(value)} ({value!r})")
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
    raise InvalidRequest(path, f"must be one of {shown}, got {value!r}")


def _check_single(value: Any, field: FieldDescriptor, path: str) -> Any:
    if field.type == _T.TYPE_MESSAGE:
        return check_json(value, field.message_type, path)
    if field.type == _T.TYPE_ENUM:
        return _check_enum(value, field.enum_type, path)
    if field.type == _T.TYPE_BOOL:
        if not isinstance(value, bool):
            raise InvalidRequest(path, f"must be true or false, got {_kind(value)} ({value!r})")
        return value
    if field.type in (_T.TYPE_STRING, _T.TYPE_BYTES):
        if not isinstance(value, str):
            what = "a base64 string" if field.type == _T.TYPE_BYTES else "a string"
            raise InvalidRequest(path, f"must be {what}, got {_kind(value)} ({value!r})")
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
            close = difflib.get_close_matches(str(key), list(by_name), n=1)
            hint = f" (did you mean {by_name[close[0]].name!r}?)" if close else ""
            raise InvalidRequest(_join(path, str(key)), f"unknown field{hint}; known fields: {', '.join(known)}")
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
