"""The client's typed results: every reply field decoded by name (or declared), precision and cost exposed."""

from __future__ import annotations

import dataclasses

import pytest
from fake_torchserve import MODEL, TOKEN

from ecco_client import EccoClient
from ecco_client import grouped as client_grouped
from ecco_client import internals as client_internals
from ecco_client import results as client_results
from ecco_client.cli import main
from ecco_client.messages import OVERRIDES, from_message
from ecco_proto.ecco.v1 import ecco_pb2 as pb

#: every reply message -> the client dataclass it is decoded into
CLIENT_TYPES: dict[str, type] = {
    "ecco.v1.GenerateResponse": client_results.GenerateResult,
    "ecco.v1.ExplainResponse": client_results.ExplainResult,
    "ecco.v1.Token": client_results.Token,
    "ecco.v1.TokenAlternative": client_results.TokenAlternative,
    "ecco.v1.GroupedView": client_grouped.GroupedView,
    "ecco.v1.TokenGroup": client_grouped.TokenGroup,
    "ecco.v1.GroupedAttribution": client_grouped.GroupedAttribution,
    "ecco.v1.Timing": client_results.Timing,
    "ecco.v1.Attribution": client_results.Attribution,
    "ecco.v1.Cost": client_results.Cost,
    "ecco.v1.Faithfulness": client_results.Faithfulness,
    "ecco.v1.GeneratedToken": client_results.TokenEvent,
    "ecco.v1.AttributionRow": client_results.RowEvent,
    "ecco.v1.InternalsResult": client_internals.Internals,
    "ecco.v1.PositionPredictions": client_internals.PositionPredictions,
    "ecco.v1.LayerPredictions": client_internals.LayerPredictions,
    "ecco.v1.TokenRankings": client_internals.TokenRankings,
    "ecco.v1.WatchedTokens": client_internals.WatchedTokens,
    "ecco.v1.LayerActivations": client_internals.LayerActivations,
    "ecco.v1.NeuronActivations": client_internals.NeuronActivations,
    "ecco.v1.NmfFactors": client_internals.NmfFactors,
    "ecco.v1.LayerSimilarity": client_internals.LayerSimilarity,
    "ecco.v1.SimilarityMatrices": client_internals.SimilarityMatrices,
}
#: reply fields the typed results do not carry: an ``error`` is raised as ``EccoError`` instead
NOT_EXPOSED = {"ecco.v1.GenerateResponse.error", "ecco.v1.ExplainResponse.error"}


def test_every_reply_field_is_exposed_by_name_or_declared() -> None:
    """Each field of a reply message is a field of its client dataclass (of the same name), and each
    dataclass field is a reply field or declared in ``ecco_client.messages.OVERRIDES``."""
    for full_name, cls in CLIENT_TYPES.items():
        message = pb.DESCRIPTOR.message_types_by_name[full_name.rsplit(".", 1)[1]]
        names = {f.name for f in dataclasses.fields(cls)}
        for field in message.fields:
            assert field.full_name in NOT_EXPOSED or field.name in names, field.full_name
            kind = field.message_type
            if field.name in names and kind is not None and not kind.GetOptions().map_entry:
                assert kind.full_name in CLIENT_TYPES or kind.name in ("Matrix", "IntMatrix"), field.full_name
        for name in names:
            assert name in message.fields_by_name or f"{cls.__name__}.{name}" in OVERRIDES, (cls.__name__, name)


def test_a_client_field_without_a_wire_field_is_an_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class Spent:
        forward_token_rows: int
        seconds: float

    with pytest.raises(TypeError, match=r"Spent\.seconds is not a field of ecco\.v1\.Cost"):
        from_message(pb.Cost(forward_token_rows=3), Spent)


def test_precision_and_cost_reach_the_typed_results(rest_url, grpc_target) -> None:
    options = {"prompt": "The capital of France is", "max_new_tokens": 2, "n_steps": 4}
    for where in ({"url": rest_url}, {"grpc": grpc_target}):
        with EccoClient(model=MODEL, token=TOKEN, **where) as client:  # type: ignore[arg-type]
            default = client.explain(**options, methods=["integrated_gradients", "saliency"])
            low = client.explain(**options, methods=["saliency"], precision="bfloat16")
        assert [a.precision for a in default.attributions] == ["float32", "float32"]
        assert low.attributions[0].precision == "bfloat16"
        ig, saliency = default.attributions
        # IG takes n_steps points per target, a gradient method one: 4x the backward token-rows
        assert ig.cost.backward_token_rows == 4 * saliency.cost.backward_token_rows > 0
        assert default.cost_estimate.token_rows >= ig.cost.token_rows + saliency.cost.token_rows
        wire = default.to_json()
        assert int(wire["attributions"][0]["cost"]["forward_token_rows"]) == ig.cost.forward_token_rows
        assert int(wire["cost_estimate"]["backward_token_rows"]) == default.cost_estimate.backward_token_rows


def test_cli_precision_and_cost_line(rest_url, capsys) -> None:
    argv = ["explain", "--url", rest_url, "--model", MODEL, "--token", TOKEN, "--prompt", "Hi", "--max-new-tokens"]
    assert main([*argv, "2", "--method", "saliency", "--precision", "bfloat16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "saliency (target probability, aggregation l2_normalized, precision bfloat16)" in lines
    (cost,) = [line for line in lines if line.startswith("cost ")]
    rows = cost.removeprefix("cost (token-rows, forward+backward): saliency ").split(" · estimate ")
    assert len(rows) == 2 and all(part.replace("+", "").isdigit() for part in rows)
