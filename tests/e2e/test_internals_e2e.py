"""Inside the model, against the real TorchServe of conftest (tiny Llama ``tiny``): layer predictions,
token rankings, the watch list and FFNN activations over REST (JSON and binary) and gRPC, equal to the
in-process engine; server-side size limits as 413 / RESOURCE_EXHAUSTED naming the limit; interventions
that do not leak into the next request.

Tolerances: REST and gRPC replies of one worker are compared exactly. Against the in-process engine:
integers (token ids, ranks, positions) exactly, probabilities to 1e-6 absolute (same CPU kernels; a
different thread count could reorder float sums), float16 activations to one float16 step (2**-10
relative) for the same reason.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from wire_inverse import from_internals_result

from ecco_proto.ecco.v1 import ecco_pb2 as pb
from ts_calls import grpc_predict, in_process, reply_message, request_message, rest

pytestmark = pytest.mark.slow

LOOK = {
    "prompt": "The capital of France is",
    "generation": {"max_new_tokens": 3},
    "attribution": {"skip": True},
    "internals": {
        "layer_predictions": True,
        "top_k": 4,
        "token_rankings": True,
        "watch": [{"text": " is"}, {"text": " the"}, {"id": 5}],
        "activations": True,
    },
}


def _with_internals(**internals) -> dict:
    return {**LOOK, "internals": internals}


def _internals(reply):
    message = reply_message(reply)
    assert message.HasField("internals")
    return message, from_internals_result(message.internals)


def test_rest_json_binary_and_grpc_agree_with_the_engine(served, reference):
    over_json = rest(served, "/explanations/tiny", LOOK)
    assert over_json.status == 200, over_json.body
    body = request_message("explain", LOOK).SerializeToString()
    over_binary = rest(served, "/explanations/tiny", body, content_type="application/x-protobuf")
    assert over_binary.status == 200 and over_binary.content_type.startswith("application/x-protobuf")
    over_grpc = grpc_predict(served, "tiny", body)
    message, got = _internals(over_json.json())
    assert reply_message(over_binary.body) == message == reply_message(over_grpc)  # one worker: exact
    assert not message.attributions  # attribution skipped

    want = from_internals_result(in_process(reference, "explain", LOOK).internals)
    assert got.n_layers == want.n_layers == 2
    start, n = message.prompt_length, len(message.tokens)
    assert n == start + 3
    lens, ref = got.layer_predictions, want.layer_predictions
    assert lens.positions == ref.positions == tuple(range(start - 1, n - 1))  # where the generated were predicted
    assert lens.token_ids.shape == (3, got.n_layers + 1, 4)
    np.testing.assert_array_equal(lens.token_ids, ref.token_ids)
    np.testing.assert_allclose(lens.probabilities, ref.probabilities, rtol=0, atol=1e-6)
    assert lens.output_deviation < 1e-5  # the last lens layer is the model's own output distribution
    np.testing.assert_array_equal(got.token_rankings.ranks, want.token_rankings.ranks)
    assert got.token_rankings.positions == tuple(range(start, n))
    assert got.watch.position == start - 1 and got.watch.token_ids[2] == 5
    np.testing.assert_array_equal(got.watch.ranks, want.watch.ranks)
    acts, ref_acts = got.activations, want.activations
    assert acts.layers == (0, 1) and acts.positions == tuple(range(n)) and acts.values.dtype == np.float16
    np.testing.assert_allclose(acts.values, ref_acts.values, rtol=2.0**-10, atol=2.0**-24)


def test_full_activations_travel_as_float16_bytes(served):
    reply = reply_message(grpc_predict(served, "tiny", request_message("explain", LOOK).SerializeToString()))
    for layer in reply.internals.activations.layers:
        assert not layer.values.values
        assert len(layer.values.float16_values) == 2 * layer.values.rows * layer.values.cols
    top = _with_internals(activations=True, activation_top_k=3, activation_order="MAGNITUDE")
    reply = reply_message(rest(served, "/explanations/tiny", top).json())
    layer = reply.internals.activations.layers[0]
    assert (layer.top_neurons.rows, layer.top_neurons.cols) == (len(reply.tokens), 3)
    assert not layer.HasField("values") and reply.internals.activations.order == pb.MAGNITUDE


LONG_PROMPT = " ".join(["The capital of France is Paris."] * 60)  # > 256 tokens: beyond max_positions
LIMITS = [
    ("top-k", _with_internals(activations=True, activation_top_k=101), "internals.activation_top_k", "max_top_k"),
    ("watch", _with_internals(watch=[{"id": i} for i in range(33)]), "internals.watch", "max_watch"),
    ("positions", {**_with_internals(layer_predictions=True, positions=list(range(257))), "prompt": LONG_PROMPT},
     "internals.positions", "max_positions"),
    # set small in the e2e archive's model-config.yaml (conftest.LIMITS, nested under `internals`): LOOK's
    # ~11 positions x 2 blocks x 64 neurons fit, 5 sentences (~40 positions) do not
    ("activation elements",
     {**_with_internals(activations=True), "prompt": " ".join(["The capital of France is Paris."] * 5)},
     "internals.activations", "max_activation_elements"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "fields", "path", "limit"), LIMITS, ids=[c[0] for c in LIMITS])
def test_size_limits_are_413_and_resource_exhausted_naming_the_limit(served, case, fields, path, limit):
    reply = rest(served, "/explanations/tiny", fields)
    assert reply.status == 413, reply.body
    error = reply.json()
    assert error["type"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith(f"{path}: ") and f"(limit {limit})" in error["message"]
    with pytest.raises(grpc.RpcError) as raised:
        grpc_predict(served, "tiny", request_message("explain", fields).SerializeToString())
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raised.value.details().startswith(error["message"])


def test_interventions_change_the_text_and_never_leak(served):
    plain = {"prompt": "The capital of France is", "generation": {"max_new_tokens": 4}}
    ablate = {**plain, "internals": {"interventions": [{"layer": 1, "neuron": n, "value": 50.0} for n in range(8)]}}
    before = rest(served, "/predictions/tiny", plain).json()["generated_text"]
    changed = reply_message(grpc_predict(served, "tiny", request_message("generate", ablate).SerializeToString()))
    after = reply_message(grpc_predict(served, "tiny", request_message("generate", plain).SerializeToString()))
    assert changed.generated_text != before
    assert after.generated_text == before == rest(served, "/predictions/tiny", plain).json()["generated_text"]


def test_layer_similarity_over_rest_equals_the_engine(served, reference):
    """CKA matrices of hidden states and FFNN activations: unit diagonal, equal to the in-process engine
    to 1e-6 (float32 on the wire, same CPU kernels); an unknown method is a 400 naming the field."""
    fields = _with_internals(similarity=["HIDDEN", "FFN"], similarity_method="cka")
    reply = rest(served, "/explanations/tiny", fields)
    assert reply.status == 200, reply.body
    message, got = _internals(reply.json())
    want = from_internals_result(in_process(reference, "explain", fields).internals)
    assert got.similarity.method == "linear_cka" and got.similarity.positions == tuple(range(len(message.tokens)))
    for a, b, n in zip(got.similarity.matrices, want.similarity.matrices, (3, 2), strict=True):
        assert a.representation == b.representation and a.matrix.shape == (n, n)
        np.testing.assert_allclose(np.diag(a.matrix), 1.0, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.matrix, b.matrix, rtol=0, atol=1e-6)
    bad = rest(served, "/explanations/tiny", _with_internals(similarity=["FFN"], similarity_method="procrustes"))
    assert bad.status == 400 and bad.json()["message"].startswith("internals.similarity_method: unknown")
