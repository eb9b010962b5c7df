"""Hostile bodies: every one is an ``InvalidRequest`` (400) naming the problem, on every path (JSON text,
KServe v1 envelopes through ``load_json``, protobuf binary), quickly and without echoing the input."""

from __future__ import annotations

import json
import time

import pytest

from ecco_codec import decode_request, load_json, status_for
from ecco_codec.json_load import MAX_DEPTH, MAX_INTEGER_DIGITS
from ecco_engine import InvalidRequest
from ecco_proto.ecco.v1 import ecco_pb2 as pb

DEEP = 100_000
JSON = "application/json"
PROTO = "application/x-protobuf"


def _refused(body, content_type: str | None = JSON) -> str:
    """The client message of decoding ``body``: it must be a 400 and come back at once."""
    start = time.perf_counter()
    with pytest.raises(InvalidRequest) as raised:
        decode_request(body, content_type=content_type, url_kind="explain")
    print(f"refused in {time.perf_counter() - start:.4f} s")  # measured, not asserted
    status, code, message = status_for(raised.value)
    assert (status, code) == (400, "INVALID_ARGUMENT")
    return message


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b"{" + b'"a":{' * DEEP + b"}" * DEEP + b"}",
        b'{"prompt": "x", "generation": ' + b'{"a": ' * DEEP + b"1" + b"}" * (DEEP + 1),
        b'{"prompt": "x", "stop": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}",
    ],
    ids=["array", "object", "inside a field", "just past the bound"],
)
@pytest.mark.parametrize("content_type", [JSON, None])
def test_deep_json_is_refused_naming_the_depth(body, content_type):
    message = _refused(body, content_type)
    if content_type is None and body.startswith(b"["):  # sniffed as protobuf (JSON bodies start with "{")
        assert message.startswith("body: not a valid serialized ecco.v1.ExplainRequest")
    else:
        assert message == f"body: JSON nested more than {MAX_DEPTH} levels deep"


@pytest.mark.parametrize(("literal", "words"), [
    ("9" * 5000, "an integer literal has 5000 digits; numbers in a request have at most 20"),
    ("-" + "9" * 4301, "an integer literal has 4301 digits"),
    ("1" * (MAX_INTEGER_DIGITS + 1), f"an integer literal has {MAX_INTEGER_DIGITS + 1} digits"),
    ("9" * 5000 + ".5", "a number literal has 5002 characters; numbers in a request have at most 64"),
    ("1e400", "the number 1e400 is beyond the range of a double"),
])  # fmt: skip
def test_huge_numbers_are_refused_naming_them(literal, words):
    body = '{"prompt": "x", "generation": {"max_new_tokens": ' + literal + "}}"
    assert _refused(body.encode()).startswith(f"body: {words}")


def test_numbers_within_the_bounds_reach_the_field_checks():
    body = b'{"prompt": "x", "generation": {"seed": -9223372036854775808, "temperature": 0.5}}'
    request = decode_request(body, content_type=JSON, url_kind="explain").request
    assert (request.generation.seed, request.generation.temperature) == (-(2**63), 0.5)
    too_big = b'{"prompt": "x", "generation": {"max_new_tokens": 99999999999999999999}}'  # 20 digits
    assert _refused(too_big).startswith("generation.max_new_tokens: must be an integer in")


def test_errors_never_echo_a_huge_value():
    huge = "9" * 1_000_000
    message = _refused(json.dumps({"prompt": "x", "generation": {"max_new_tokens": huge}}).encode())
    assert message.startswith("generation.max_new_tokens: must be an integer, got '9999")
    assert "(1000002 characters)" in message and len(message) < 200
    message = _refused(json.dumps({"prompt": [1] * 100_000}).encode())
    assert message.startswith("prompt: must be a string, got an array") and len(message) < 200
    message = _refused(json.dumps({"x" * 100_000: 1}).encode())
    assert "unknown field" in message and len(message) < 400


def test_unpaired_surrogate_names_the_field():
    message = _refused(b'{"prompt": "x", "messages": [{"role": "user", "content": "a\\ud800"}]}')
    assert message.startswith("messages[0].content: has an unpaired surrogate ('\\ud800') at 1")


def test_a_large_prompt_decodes_quickly():
    """No per-string regular expression (json_format's): a 50 MB prompt decodes in a fraction of a second."""
    body = json.dumps({"prompt": "x" * 50_000_000}).encode()
    start = time.perf_counter()
    decoded = decode_request(body, content_type=JSON, url_kind="explain")
    print(f"50 MB prompt decoded in {time.perf_counter() - start:.3f} s")
    assert len(decoded.request.prompt) == 50_000_000


def test_deeply_nested_protobuf_groups_are_refused():
    # 0x5b: field 11, start group, nested 100 000 deep (beyond protobuf's recursion limit)
    for content_type in (PROTO, None):
        assert _refused(b"\x5b" * DEEP, content_type).startswith("body: not a valid serialized ecco.v1.ExplainRequest")


def test_protobuf_binary_with_a_huge_prompt_is_decoded_not_refused():
    """Sizes are the engine's business (``max_input_tokens``): the codec hands the text over."""
    body = pb.ExplainRequest(prompt="x" * 1_000_000).SerializeToString()
    assert len(decode_request(body, content_type=PROTO, url_kind="explain").request.prompt) == 1_000_000


def test_load_json_gives_the_value_of_a_kserve_envelope():
    envelope = load_json(b'{"instances": [{"prompt": "x", "generation": {"max_new_tokens": 2}}]}')
    assert envelope == {"instances": [{"prompt": "x", "generation": {"max_new_tokens": 2}}]}
    for body, words in [
        (b"[" * DEEP, "nested more than"),
        (b'{"instances": [{"generation": {"max_new_tokens": ' + b"9" * 5000 + b"}}]}", "5000 digits"),
        (b"\xff", "not valid UTF-8"),
        (b'{"instances": ', "not valid JSON"),
    ]:
        with pytest.raises(InvalidRequest, match=words) as raised:
            load_json(body)
        assert raised.value.field == "body"
