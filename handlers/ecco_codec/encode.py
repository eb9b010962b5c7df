"""Engine results -> wire replies (``ecco.v1`` messages): a JSON-able dict or serialized bytes.

The reply uses the request's wire (``Decoded.wire``): "json" gives the proto3 JSON mapping with the
proto field names (snake_case) and every field without presence printed (empty lists, zeros), so a
client sees the same keys every time; "proto" gives the serialized message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

import ecco_engine
from ecco_engine import Attribution, Explanation, GenerationResult, Timing, Token
from ecco_engine.attribution import AttributionRow
from ecco_engine.explainer import GeneratedToken
from ecco_engine.faithfulness_types import Faithfulness
from ecco_engine.types import AttributionCost
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .arrays import to_matrix
from .decode import Decoded, Wire
from .fields import wire_enum
from .internals_result import to_internals_result

ENGINE_VERSION: str = ecco_engine.__version__


def _token(t: Token) -> pb.Token:
    return pb.Token(id=t.id, text=t.text, start=t.start, end=t.end)


def _timings(timings: Iterable[Timing]) -> list[pb.Timing]:
    return [pb.Timing(stage=t.stage, seconds=t.seconds) for t in timings]


def _floats(values: np.ndarray | None) -> list[float]:
    return [] if values is None else np.asarray(values, dtype=np.float32).ravel().tolist()


def to_attribution(a: Attribution, *, float16: bool = False) -> pb.Attribution:
    """The wire form of one engine ``Attribution``."""
    message = pb.Attribution(
        method=a.method,
        target=wire_enum(pb.TargetKind.DESCRIPTOR, a.target),
        aggregation=wire_enum(pb.Aggregation.DESCRIPTOR, a.aggregation),
        target_positions=list(a.target_positions),
        n_sources=int(a.scores.shape[1]),
        scores=to_matrix(a.scores, float16=float16),
        target_scores=_floats(a.target_scores),
        baseline_scores=_floats(a.baseline_scores),
        convergence_deltas=_floats(a.convergence_deltas),
        n_steps=list(a.n_steps or ()),
        precision=wire_enum(pb.Precision.DESCRIPTOR, a.precision),
        cost=_cost(a.cost),
    )
    if a.integration is not None:
        message.integration = wire_enum(pb.Integration.DESCRIPTOR, a.integration)
    if a.baseline is not None:
        message.baseline = a.baseline
    if a.contrast_token_id is not None:
        message.contrast_token_id = a.contrast_token_id
    if a.faithfulness is not None:
        message.faithfulness.CopyFrom(to_faithfulness(a.faithfulness))
    return message


def to_faithfulness(f: Faithfulness) -> pb.Faithfulness:
    """The wire form of an attribution's faithfulness metrics (matrices always float32: they are small)."""
    message = pb.Faithfulness(
        perturbation=wire_enum(pb.Perturbation.DESCRIPTOR, f.perturbation),
        fractions=list(f.fractions),
        aopc_steps=f.aopc_steps,
        comprehensiveness=to_matrix(f.comprehensiveness),
        sufficiency=to_matrix(f.sufficiency),
        aopc=_floats(f.aopc),
        mean_comprehensiveness=f.mean_comprehensiveness,
        mean_sufficiency=f.mean_sufficiency,
        mean_aopc=f.mean_aopc,
        forward_token_rows=f.forward_token_rows,
    )
    if f.replacement_token is not None:
        message.replacement_token = f.replacement_token
    if f.replacement_token_id is not None:
        message.replacement_token_id = f.replacement_token_id
    return message


def _cost(cost: AttributionCost) -> pb.Cost:
    return pb.Cost(forward_token_rows=cost.forward_token_rows, backward_token_rows=cost.backward_token_rows)


def _common(result: GenerationResult, timings: Iterable[Timing], model_name: str) -> dict[str, Any]:
    return {
        "tokens": [_token(t) for t in result.tokens],
        "prompt_length": result.prompt_length,
        "generated_text": result.generated_text,
        "finish_reason": result.finish_reason,
        "timings": _timings(timings),
        "model": model_name,
        "engine_version": ENGINE_VERSION,
    }


def to_generate_response(
    result: GenerationResult, *, model_name: str, extra_timings: Sequence[Timing] = ()
) -> pb.GenerateResponse:
    """The ``GenerateResponse`` for a generation; ``extra_timings`` (e.g. the handler's) follow the engine's."""
    return pb.GenerateResponse(**_common(result, (*result.timings, *extra_timings), model_name))


def to_explain_response(
    explanation: Explanation,
    *,
    model_name: str,
    float16: bool = False,
    extra_timings: Sequence[Timing] = (),
    tokenizer=None,
) -> pb.ExplainResponse:
    """The ``ExplainResponse`` for an explanation; ``extra_timings`` follow the engine's.

    ``tokenizer`` (optional, anything with ``decode(ids, skip_special_tokens=...)``): fills
    ``internals.token_texts`` with the text of every token id the internals mention.
    """
    message = pb.ExplainResponse(
        **_common(explanation.generation, (*explanation.timings, *extra_timings), model_name),
        attributions=[to_attribution(a, float16=float16) for a in explanation.attributions],
        cost_estimate=_cost(explanation.cost_estimate),
    )
    if explanation.internals is not None:
        message.internals.CopyFrom(to_internals_result(explanation.internals, float16=float16, tokenizer=tokenizer))
    return message


def to_wire(message: Message, wire: str) -> bytes | dict[str, Any]:
    """``message`` as the JSON-able dict (wire "json") or serialized bytes (wire "proto")."""
    if wire == "proto":
        return message.SerializeToString()
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def encode_generation(
    result: GenerationResult, decoded: Decoded, *, model_name: str, extra_timings: Sequence[Timing] = ()
) -> bytes | dict[str, Any]:
    """The reply to a generate request, in the request's wire format."""
    return to_wire(to_generate_response(result, model_name=model_name, extra_timings=extra_timings), decoded.wire)


def encode_explanation(
    explanation: Explanation,
    decoded: Decoded,
    *,
    model_name: str,
    extra_timings: Sequence[Timing] = (),
    tokenizer=None,
) -> bytes | dict[str, Any]:
    """The reply to an explain request, in the request's wire format (float16 matrices if asked).

    Pass the model's ``tokenizer`` so the reply names the tokens of its internals (``token_texts``)."""
    message = to_explain_response(
        explanation, model_name=model_name, float16=decoded.float16, extra_timings=extra_timings, tokenizer=tokenizer
    )
    return to_wire(message, decoded.wire)


# ---- streaming (ExplainRequest.stream): one StreamEvent per message ------------------------------
def encode_stream_token(token: GeneratedToken, decoded: Decoded) -> bytes | dict[str, Any]:
    """A generated token as soon as it is produced, with the engine's index, position and offsets."""
    wire_token = pb.Token(id=token.id, text=token.text, start=token.start, end=token.end)
    event = pb.StreamEvent(token=pb.GeneratedToken(index=token.index, position=token.position, token=wire_token))
    return to_wire(event, decoded.wire)


def encode_stream_row(row: AttributionRow, decoded: Decoded) -> bytes | dict[str, Any]:
    """One explained token's attribution row for one method, as soon as the engine computed it.

    ``scores`` travel as a ``(1, target_position)`` matrix (float16 if the request asked for it);
    integrated gradients' baseline score, convergence delta and steps are set when the row has them."""
    scores = np.asarray(row.scores, dtype=np.float32).reshape(1, -1)
    message = pb.AttributionRow(
        method=row.method,
        target_position=row.target_position,
        scores=to_matrix(scores, float16=decoded.float16),
        target_score=float(row.target_score),
    )
    if row.baseline_score is not None:
        message.baseline_score = float(row.baseline_score)
    if row.convergence_delta is not None:
        message.convergence_delta = float(row.convergence_delta)
    if row.n_steps is not None:
        message.n_steps = int(row.n_steps)
    return to_wire(pb.StreamEvent(attribution_row=message), decoded.wire)


def to_status(code: str, message: str) -> status_pb2.Status:
    """A ``google.rpc.Status`` from a gRPC code name (``status_for``'s second item) and a message."""
    try:
        number = code_pb2.Code.Value(code)
    except ValueError:
        raise ValueError(f"not a google.rpc.Code name: {code!r}") from None
    return status_pb2.Status(code=number, message=message)


def encode_error(code: str, message: str, wire: Wire) -> bytes | dict[str, Any]:
    """The reply of a request that failed but cannot carry its own status: only ``error`` set.

    ``code``: a gRPC code name ("INVALID_ARGUMENT", as ``status_for`` gives it). The field number of
    ``error`` is 15 in ``GenerateResponse``, ``ExplainResponse`` and ``StreamEvent``, so the same bytes
    (wire "proto") or the same ``{"error": {"code": 3, "message": ...}}`` (wire "json") parse as any
    of them: the caller need not know whether the request was a stream or what kind it was."""
    event = pb.StreamEvent(error=to_status(code, message))
    if wire == "proto":
        return event.SerializeToString()
    return json_format.MessageToDict(event, preserving_proto_field_name=True)


def encode_stream_summary(
    result: GenerationResult | Explanation,
    decoded: Decoded,
    *,
    model_name: str,
    extra_timings: Sequence[Timing] = (),
    tokenizer=None,
) -> bytes | dict[str, Any]:
    """The last StreamEvent: the full reply (``generate_summary`` or ``explain_summary`` by result type)."""
    if isinstance(result, Explanation):
        summary = to_explain_response(
            result, model_name=model_name, float16=decoded.float16, extra_timings=extra_timings, tokenizer=tokenizer
        )
        event = pb.StreamEvent(explain_summary=summary)
    else:
        event = pb.StreamEvent(
            generate_summary=to_generate_response(result, model_name=model_name, extra_timings=extra_timings)
        )
    return to_wire(event, decoded.wire)
