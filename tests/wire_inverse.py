"""Test-only inverses of the codec: engine requests -> wire messages, wire internals -> engine results.

The server never needs these (it decodes requests and encodes results); the codec tests use them to
check round trips, and the e2e tests to compare served internals with in-process ones.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ecco_codec.arrays import from_int_matrix, from_matrix, from_matrix_as
from ecco_codec.fields import wire_enum
from ecco_engine import ExplainRequest
from ecco_engine.internals import (
    InternalsParams,
    InternalsResult,
    LayerPredictions,
    LayerSimilarity,
    NeuronActivations,
    NmfFactors,
    SimilarityMatrices,
    TokenRankings,
    WatchedTokens,
)
from ecco_proto.ecco.v1 import ecco_pb2 as pb
from ecco_proto.fields import enum_name

Kind = Literal["generate", "explain"]


def _token_ref(token: str | int) -> pb.TokenRef:
    return pb.TokenRef(text=token) if isinstance(token, str) else pb.TokenRef(id=token)


def to_proto_request(
    request: ExplainRequest, kind: Kind = "explain", *, float16: bool = False, stream: bool = False
) -> pb.ExplainRequest:
    """The wire message for an engine request, every field set explicitly: the inverse of decoding
    (``stream`` is set only when true)."""
    g, a = request.generation, request.attribution
    generation = pb.GenerationParams(
        max_new_tokens=g.max_new_tokens,
        do_sample=g.do_sample,
        temperature=g.temperature,
        top_k=g.top_k,
        top_p=g.top_p,
        stop=list(g.stop),
        top_n_tokens=g.top_n_tokens,
    )
    if g.seed is not None:
        generation.seed = g.seed
    attribution = pb.AttributionParams(
        methods=list(a.methods),
        target=wire_enum(pb.TargetKind.DESCRIPTOR, a.target),
        n_steps=a.n_steps,
        integration=wire_enum(pb.Integration.DESCRIPTOR, a.integration),
        baseline=a.baseline,
        aggregation=wire_enum(pb.Aggregation.DESCRIPTOR, a.aggregation),
        positions=list(a.positions or ()),
        max_n_steps=a.max_n_steps,
        precision=wire_enum(pb.Precision.DESCRIPTOR, a.precision),
        skip=not a.methods,
        contrast_tokens=[_token_ref(t) for t in a.contrast_tokens or ()],
    )
    if isinstance(a.contrast_token, str):
        attribution.contrast_token = a.contrast_token
    elif a.contrast_token is not None:
        attribution.contrast_token_id = a.contrast_token
    if a.completeness_tolerance is not None:
        attribution.completeness_tolerance = a.completeness_tolerance
    if a.n_samples is not None:
        attribution.n_samples = a.n_samples
    attribution.sampling_seed = a.sampling_seed
    attribution.stdevs = a.stdevs
    if a.faithfulness is not None:
        f = a.faithfulness
        attribution.faithfulness.CopyFrom(
            pb.FaithfulnessParams(
                fractions=list(f.fractions),
                perturbation=wire_enum(pb.Perturbation.DESCRIPTOR, f.perturbation),
                aopc_steps=f.aopc_steps,
            )
        )
        if f.replacement_token is not None:
            attribution.faithfulness.replacement_token = f.replacement_token
    message = pb.ExplainRequest(
        kind=wire_enum(pb.RequestKind.DESCRIPTOR, kind),
        messages=[pb.ChatMessage(role=m.role, content=m.content) for m in request.messages],
        generation=generation,
        attribution=attribution,
        float16=float16,
        internals=to_proto_internals(request.internals),
    )
    if request.prompt is not None:
        message.prompt = request.prompt
    if request.continuation is not None:
        message.continuation = request.continuation
    message.continuation_ids.extend(request.continuation_ids or ())
    if request.grouping.unit is not None:
        message.grouping.CopyFrom(
            pb.GroupingParams(
                unit=wire_enum(pb.GroupUnit.DESCRIPTOR, request.grouping.unit),
                spans=[pb.CharSpan(start=s.start, end=s.end) for s in request.grouping.spans],
                keep_special=request.grouping.keep_special,
            )
        )
    if stream:
        message.stream = True
    return message


def to_proto_internals(params: InternalsParams) -> pb.InternalsParams:
    """The wire message for engine ``InternalsParams``, every field set explicitly (inverse of decoding)."""
    message = pb.InternalsParams(
        layer_predictions=params.layer_predictions,
        top_k=params.top_k,
        positions=list(params.positions or ()),
        token_rankings=params.token_rankings,
        watch=[pb.WatchToken(text=t) if isinstance(t, str) else pb.WatchToken(id=t) for t in params.watch],
        activations=params.activations,
        activation_layers=list(params.activation_layers or ()),
        activation_positions=list(params.activation_positions or ()),
        activation_order=wire_enum(pb.ActivationOrder.DESCRIPTOR, params.activation_order),
        nmf_layers=list(params.nmf_layers or ()),
        nmf_top_neurons=params.nmf_top_neurons,
        interventions=[
            pb.Intervention(
                layer=i.layer, neuron=i.neuron, mode=wire_enum(pb.InterventionMode.DESCRIPTOR, i.mode), value=i.value
            )
            for i in params.interventions
        ],
        similarity=[wire_enum(pb.Representation.DESCRIPTOR, r) for r in params.similarity],
        similarity_method=params.similarity_method,
        similarity_positions=list(params.similarity_positions or ()),
    )
    for name in ("watch_position", "activation_top_k", "nmf_components"):
        value = getattr(params, name)
        if value is not None:
            setattr(message, name, value)
    return message


def _from_activations(m: pb.NeuronActivations) -> NeuronActivations:
    layers, positions = tuple(item.layer for item in m.layers), tuple(m.positions)
    if m.layers and m.layers[0].HasField("values"):
        values = np.stack([from_matrix_as(item.values, np.float16) for item in m.layers])
        return NeuronActivations(layers, positions, m.n_neurons, values=values)
    return NeuronActivations(
        layers,
        positions,
        m.n_neurons,
        top_indices=np.stack([from_int_matrix(item.top_neurons) for item in m.layers]),
        top_values=np.stack([from_matrix(item.top_values) for item in m.layers]),
        order=enum_name(pb.ActivationOrder.DESCRIPTOR, m.order) or "value",
    )


def from_internals_result(m: pb.InternalsResult) -> InternalsResult:
    """The engine ``InternalsResult`` of a wire message (arrays int64 / float32; full activations float16)."""
    parts: dict[str, object] = {}
    if m.HasField("layer_predictions"):
        lp = m.layer_predictions
        parts["layer_predictions"] = LayerPredictions(
            positions=tuple(p.position for p in lp.predictions),
            token_ids=np.stack([from_int_matrix(p.token_ids) for p in lp.predictions]),
            probabilities=np.stack([from_matrix(p.probabilities) for p in lp.predictions]),
            output_deviation=lp.output_deviation,
        )
    if m.HasField("token_rankings"):
        tr = m.token_rankings
        parts["token_rankings"] = TokenRankings(
            tuple(tr.positions), tuple(tr.token_ids), from_int_matrix(tr.ranks), from_matrix(tr.probabilities)
        )
    if m.HasField("watch"):
        w = m.watch
        parts["watch"] = WatchedTokens(
            w.position, tuple(w.token_ids), from_int_matrix(w.ranks), from_matrix(w.probabilities)
        )
    if m.HasField("activations"):
        parts["activations"] = _from_activations(m.activations)
    if m.HasField("nmf"):
        n = m.nmf
        parts["nmf"] = NmfFactors(
            layers=tuple(n.layers),
            positions=tuple(n.positions),
            token_strengths=from_matrix(n.token_strengths),
            top_layers=from_int_matrix(n.top_layers),
            top_neurons=from_int_matrix(n.top_neurons),
            top_weights=from_matrix(n.top_weights),
            relative_error=n.relative_error,
            n_iter=n.n_iter,
        )
    if m.HasField("similarity"):
        s = m.similarity
        parts["similarity"] = SimilarityMatrices(
            method=s.method,
            positions=tuple(s.positions),
            matrices=tuple(
                LayerSimilarity(
                    str(enum_name(pb.Representation.DESCRIPTOR, item.representation)),
                    tuple(item.layers),
                    from_matrix(item.matrix),
                )
                for item in s.matrices
            ),
        )
    return InternalsResult(n_layers=m.n_layers, **parts)  # type: ignore[arg-type]
