"""``load_json``: JSON text -> Python values, with nesting depth and number sizes bounded while parsing.

Python's ``json.loads`` lets two hostile bodies escape as non-client errors: ``[[[[...]]]]`` nested
100 000 deep raises ``RecursionError``, and an integer literal of thousands of digits raises a plain
``ValueError`` (the interpreter's int-string conversion limit, 4300 digits). Here every problem is an
``InvalidRequest`` on "body" that says what is wrong:

- nesting: the C scanner stops at the interpreter's recursion limit (so the work is bounded by it, not
  by the body), and anything deeper than ``MAX_DEPTH`` is refused; the request schema nests a few levels;
- numbers: an integer literal longer than ``MAX_INTEGER_DIGITS`` digits, a number literal longer than
  ``MAX_NUMBER_CHARS`` characters and a number beyond the range of a double are refused as the parser
  meets them (the widest field is 64-bit: 20 digits).
"""

from __future__ import annotations

import json
import math
from typing import Any

from ecco_engine import InvalidRequest

#: arrays/objects inside each other (an ExplainRequest in a KServe v1 envelope nests 6 deep)
MAX_DEPTH = 32
#: digits of an integer literal (uint64 has 20)
MAX_INTEGER_DIGITS = 20
#: characters of a number literal with a fraction or an exponent
MAX_NUMBER_CHARS = 64


def _integer(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INTEGER_DIGITS:
        raise InvalidRequest(
            "body", f"an integer literal has {digits} digits; numbers in a request have at most {MAX_INTEGER_DIGITS}"
        )
    return int(text)


def _number(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidRequest(
            "body", f"a number literal has {len(text)} characters; numbers in a request have at most {MAX_NUMBER_CHARS}"
        )
    value = float(text)
    if math.isinf(value):
        raise InvalidRequest("body", f"the number {text} is beyond the range of a double")
    return value


def _depth_beyond(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest more than ``limit`` deep in ``value`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def load_json(body: bytes | bytearray | memoryview | str) -> Any:
    """The value of a JSON body (UTF-8 bytes or text); raises ``InvalidRequest`` on "body" naming the problem."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequest("body", f"not valid UTF-8 JSON (byte {error.start})") from None
    too_deep = InvalidRequest("body", f"JSON nested more than {MAX_DEPTH} levels deep")
    try:
        value = json.loads(body, parse_int=_integer, parse_float=_number)
    except json.JSONDecodeError as error:
        raise InvalidRequest(
            "body", f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise too_deep from None
    if _depth_beyond(value, MAX_DEPTH):
        raise too_deep
    return value
