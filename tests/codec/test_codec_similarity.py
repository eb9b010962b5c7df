"""Layer similarity on the wire: request fields, one matrix per representation, errors naming the wire path.

Tolerances: the engine's float64 matrices travel as packed float32 (relative error <= 2**-24) or, with
``float16`` asked for, as float16 bytes (relative <= 2**-11; CKA values lie in [0, 1]).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from google.protobuf import json_format
from wire_inverse import from_internals_result, to_proto_internals

from ecco_codec import (
    Decoded,
    decode_internals,
    decode_request,
    encode_explanation,
    status_for,
    to_internals_result,
)
from ecco_codec.fields import engine_enum
from ecco_engine import AttributionParams, ExplainRequest, GenerationParams, InvalidRequest, UnknownMethod
from ecco_engine.internals import InternalsParams, SimilarityMatrices
from ecco_engine.internals.types import SIMILARITY_REPRESENTATIONS
from ecco_proto.ecco.v1 import ecco_pb2 as pb

PROMPT = "The capital of France is"
SIMILAR = InternalsParams(similarity=("ffn", "hidden"), similarity_method="cka", similarity_positions=(0, 2, 3, 5, 6))


def _request(internals: InternalsParams) -> ExplainRequest:
    return ExplainRequest(
        prompt=PROMPT,
        generation=GenerationParams(max_new_tokens=3),
        attribution=AttributionParams(methods=()),
        internals=internals,
    )


@pytest.fixture(scope="module")
def similar(explainer):
    return explainer.explain(_request(SIMILAR))


def _reply(data: bytes | dict) -> pb.ExplainResponse:
    message = pb.ExplainResponse()
    if isinstance(data, dict):
        json_format.ParseDict(json.loads(json.dumps(data)), message)  # through JSON text, as a client gets it
    else:
        message.ParseFromString(data)
    return message


@pytest.mark.parametrize("wire", ["json", "proto"])
@pytest.mark.parametrize("float16", [False, True])
def test_similarity_round_trip(similar, wire: str, float16: bool) -> None:
    want: SimilarityMatrices = similar.internals.similarity
    decoded = Decoded(kind="explain", request=_request(SIMILAR), wire=wire, float16=float16)  # type: ignore[arg-type]
    got = from_internals_result(_reply(encode_explanation(similar, decoded, model_name="tiny")).internals).similarity
    assert got is not None
    assert (got.method, got.positions, got.n_tokens) == ("linear_cka", (0, 2, 3, 5, 6), 5)
    assert [m.representation for m in got.matrices] == ["ffn", "hidden"]  # the order asked for
    rtol = 2.0**-11 if float16 else 2.0**-24
    for a, b in zip(got.matrices, want.matrices, strict=True):
        assert a.layers == b.layers and a.labels == b.labels
        np.testing.assert_allclose(a.matrix, b.matrix, rtol=rtol, atol=0)


def test_one_square_matrix_per_representation(similar) -> None:
    message = to_internals_result(similar.internals).similarity
    n_layers = similar.internals.n_layers
    ffn, hidden = message.matrices
    assert (ffn.representation, hidden.representation) == (pb.FFN, pb.HIDDEN)
    assert list(hidden.layers) == list(range(n_layers + 1)) and list(ffn.layers) == list(range(n_layers))
    assert (hidden.matrix.rows, hidden.matrix.cols) == (n_layers + 1, n_layers + 1)
    assert len(hidden.matrix.values) == (n_layers + 1) ** 2 and not hidden.matrix.float16_values


def test_request_fields_round_trip_and_decode_from_json() -> None:
    assert decode_internals(to_proto_internals(SIMILAR)) == SIMILAR
    body = {
        "prompt": "x",
        "internals": {"similarity": ["hidden", "FFN"], "similarityMethod": "pwcca", "similarity_positions": [1, 2]},
    }
    internals = decode_request(body, url_kind="explain").request.internals
    assert internals.similarity == ("hidden", "ffn") and internals.similarity_method == "pwcca"
    assert internals.similarity_positions == (1, 2) and internals.needs_forward
    assert decode_request({"prompt": "x"}, url_kind="explain").request.internals.similarity_method == "linear_cka"


def test_representation_table_is_complete() -> None:
    REPRESENTATIONS = {
        n: engine_enum(n, pb.Representation.DESCRIPTOR, str, "t") for n in pb.Representation.values() if n
    }
    assert sorted(REPRESENTATIONS.values()) == sorted(SIMILARITY_REPRESENTATIONS)
    assert set(REPRESENTATIONS) == {v.number for v in pb.Representation.DESCRIPTOR.values if v.number}


@pytest.mark.parametrize(
    ("internals", "path"),
    [
        ({"similarity": ["REPRESENTATION_UNSPECIFIED"]}, "internals.similarity[0]"),
        ({"similarity": ["attention"]}, "internals.similarity[0]"),
        ({"similarity": ["hidden", "hidden"]}, "internals.similarity"),
        ({"similarity_positions": [1, 2]}, "internals.similarity_positions"),
    ],
)
def test_decode_errors_name_the_wire_path(internals: dict, path: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_request({"prompt": "x", "internals": internals}, url_kind="explain")
    assert str(info.value).startswith(f"{path}: "), str(info.value)


def test_engine_errors_name_the_wire_path(explainer) -> None:
    body = {"prompt": PROMPT, "attribution": {"skip": True}, "internals": {"similarity": ["ffn"]}}
    for extra, error_type, path in [
        ({"similarity_method": "procrustes"}, UnknownMethod, "internals.similarity_method"),
        ({"similarity_positions": [1, 99]}, InvalidRequest, "internals.similarity_positions"),
    ]:
        request = decode_request({**body, "internals": {**body["internals"], **extra}}, url_kind="explain").request
        with pytest.raises(error_type) as info:
            explainer.explain(request)
        status, code, message = status_for(info.value)
        assert (status, code) == (400, "INVALID_ARGUMENT") and message.startswith(f"{path}: "), message
