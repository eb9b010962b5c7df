"""Internals through EccoClient over real sockets (the fake TorchServe servers of conftest): the same typed
results on every transport, equal to the in-process engine; interventions; limit errors; the builder.

Tolerances: token ids, ranks and float16 activations exactly; float32 probabilities exactly (packed
float32 on the wire, JSON floats round-trip float32); with float16 asked, 2**-11 relative.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fake_torchserve import MODEL, TOKEN

from ecco_client import EccoClient, EccoError, ExplainResult, build_internals, parse_intervention
from ecco_codec import decode_request
from ecco_proto.ecco.v1 import ecco_pb2 as pb

PROMPT = "The capital of France is"
LOOK = {
    "layer_predictions": True,
    "top_k": 3,
    "token_rankings": True,
    "watch": [" is", " the", 5],
    "activations": True,
}
OPTIONS = {"prompt": PROMPT, "max_new_tokens": 2, "attribute": False, "internals": LOOK}


@pytest.fixture(scope="module")
def clients(rest_url, grpc_target):
    made = {
        "rest-json": EccoClient(url=rest_url, model=MODEL, token=TOKEN),
        "rest-proto": EccoClient(url=rest_url, model=MODEL, token=TOKEN, wire="proto"),
        "rest-kserve": EccoClient(url=rest_url, model=MODEL, token=TOKEN, kserve=True),
        "grpc": EccoClient(grpc=grpc_target, model=MODEL, token=TOKEN),
    }
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(scope="module")
def engine_result(backend):
    """The in-process engine's explanation for OPTIONS (same model, same codec decoding)."""
    from ecco_client.build import build_request

    body = build_request("explain", **OPTIONS).SerializeToString()
    decoded = decode_request(body, content_type="application/x-protobuf")
    with backend.lock:
        return backend.explainer.explain(decoded.request)


def _no_timings(result: ExplainResult) -> ExplainResult:
    return dataclasses.replace(result, timings=())


def test_every_transport_gives_the_same_internals_equal_to_the_engine(clients, engine_result) -> None:
    results = {name: client.explain(**OPTIONS) for name, client in clients.items()}
    first = results["grpc"]
    for name, result in results.items():
        assert _no_timings(result) == _no_timings(first), name
    internals, want = first.internals, engine_result.internals
    assert first.attributions == () and internals is not None and internals.n_layers == want.n_layers
    lens = internals.layer_predictions
    assert lens.positions == want.layer_predictions.positions
    np.testing.assert_array_equal([p.token_ids for p in lens.predictions], want.layer_predictions.token_ids)
    np.testing.assert_array_equal([p.probabilities for p in lens.predictions], want.layer_predictions.probabilities)
    ranks = internals.token_rankings
    assert ranks.positions == want.token_rankings.positions and ranks.token_ids == want.token_rankings.token_ids
    np.testing.assert_array_equal(ranks.ranks, want.token_rankings.ranks)
    np.testing.assert_array_equal(internals.watch.ranks, want.watch.ranks)
    assert internals.activations.full and internals.activations.positions == want.activations.positions
    np.testing.assert_array_equal(internals.activations.values_array(), want.activations.values.astype(np.float32))


def test_watch_list_names_tokens_and_finds_the_overtaking_layer(clients, engine_result) -> None:
    watch = clients["rest-json"].explain(**OPTIONS).internals.watch
    assert watch.texts[:2] == (" is", " the") and watch.token_ids[2] == 5
    want = engine_result.internals.watch
    for winner, loser in [(" is", " the"), (" the", " is"), (" is", 5), (5, " the")]:
        expected = want.overtake_layer(watch.token_ids[watch.index(winner)], watch.token_ids[watch.index(loser)])
        assert watch.overtake_layer(winner, loser) == expected
    assert watch.ranks[watch.leader][-1] == min(r[-1] for r in watch.ranks)


def test_top_activations_nmf_and_float16(clients, engine_result) -> None:
    internals = {
        "activations": True,
        "activation_layers": [1],
        "activation_top_k": 4,
        "activation_order": "magnitude",
        "nmf_components": 2,
        "layer_predictions": True,
    }
    result = clients["grpc"].explain(
        prompt=PROMPT, max_new_tokens=2, attribute=False, internals=internals, float16=True
    )
    acts = result.internals.activations
    assert not acts.full and acts.order == "magnitude" and [item.layer for item in acts.layers] == [1]
    assert len(acts.layers[0].top_neurons) == len(acts.positions) and len(acts.layers[0].top_neurons[0]) == 4
    nmf = result.internals.nmf
    assert nmf.n_components == 2 and nmf.layers == (1,) and len(nmf.component_neurons(0)) == 10
    got = np.asarray([p.probabilities for p in result.internals.layer_predictions.predictions])
    want = engine_result.internals.layer_predictions.probabilities[:, :, :5]
    np.testing.assert_allclose(got[:, :, :3], want[:, :, :3], rtol=2.0**-11, atol=2.0**-24)


def test_interventions_change_the_text_and_do_not_leak(clients) -> None:
    for name in ("rest-json", "grpc"):
        client = clients[name]
        before = client.generate(prompt=PROMPT, max_new_tokens=4)
        changed = client.generate(prompt=PROMPT, max_new_tokens=4, internals={"interventions": ["1:0:set:100"]})
        after = client.generate(prompt=PROMPT, max_new_tokens=4)
        assert changed.generated_text != before.generated_text, name
        assert after.generated_text == before.generated_text, name


@pytest.mark.parametrize("transport", ["rest-json", "grpc"])
@pytest.mark.parametrize(("internals", "status", "text"), [
    ({"activations": True, "activation_top_k": 101}, 413,
     "internals.activation_top_k: must be at most 100 (limit max_top_k)"),
    ({"layer_predictions": True, "positions": [99]}, 400, "internals.positions: position 99 is out of range"),
    ({"watch": ["France is"]}, 400, "internals.watch[0]: "),
    ({"interventions": [(9, 0, "set", 0.0)]}, 400, "internals.interventions[0].layer: must be in 0..1"),
])  # fmt: skip
def test_errors_name_the_field_and_limit(clients, transport, internals, status, text) -> None:
    with pytest.raises(EccoError) as info:
        clients[transport].explain(prompt=PROMPT, max_new_tokens=2, attribute=False, internals=internals)
    assert info.value.status == status and text in info.value.message
    assert info.value.code == ("RESOURCE_EXHAUSTED" if status == 413 else "INVALID_ARGUMENT")


def test_stream_summary_has_the_internals(clients) -> None:
    items = list(clients["grpc"].stream("explain", **OPTIONS))
    summary = items[-1]
    assert isinstance(summary, ExplainResult) and summary.internals.layer_predictions is not None


def test_build_internals_and_interventions() -> None:
    message = build_internals(
        watch=[" Paris", 7],
        activation_order="MAGNITUDE",
        top_k=2,
        interventions=["3:117:set:0", (1, 2, "scale", 1.5), {"layer": 0, "neuron": 4}, pb.Intervention(layer=5)],
    )
    assert [w.WhichOneof("token") for w in message.watch] == ["text", "id"]
    assert message.activation_order == pb.MAGNITUDE and message.HasField("top_k")
    assert not message.HasField("activation_top_k")  # None: server default (full tensor)
    modes = [(i.layer, i.neuron, i.mode, i.value) for i in message.interventions]
    assert modes == [(3, 117, pb.SET, 0.0), (1, 2, pb.SCALE, 1.5), (0, 4, 0, 0.0), (5, 0, 0, 0.0)]
    assert parse_intervention(" 2 : 3 : Scale : -0.5") == pb.Intervention(layer=2, neuron=3, mode=pb.SCALE, value=-0.5)
    for bad in ("1:2:set", "1:2:double:3", "a:2:set:0", "1:2:set:x"):
        with pytest.raises(ValueError, match="intervention"):
            parse_intervention(bad)
