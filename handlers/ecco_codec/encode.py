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

import ecco_engine
from ecco_engine import Attribution, Explanation, GenerationResult, Timing, Token
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .arrays import to_matrix
from .decode import Decoded
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
        target=pb.TargetKind.Value(a.target.name),
        aggregation=pb.Aggregation.Value(a.aggregation.name),
        target_positions=list(a.target_positions),
        n_sources=int(a.scores.shape[1]),
        scores=to_matrix(a.scores, float16=float16),
        target_scores=_floats(a.target_scores),
        baseline_scores=_floats(a.baseline_scores),
        convergence_deltas=_floats(a.convergence_deltas),
        n_steps=list(a.n_steps or ()),
    )
    if a.integration is not None:
        message.integration = pb.Integration.Value(a.integration.name)
    if a.baseline is not None:
        message.baseline = a.baseline
    if a.contrast_token_id is not None:
        message.contrast_token_id = a.contrast_token_id
    return message


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


# ---- streaming (StreamPredictions): one StreamEvent per message ---------------------------------
def encode_stream_token(token: Token, decoded: Decoded, *, index: int, position: int) -> bytes | dict[str, Any]:
    """A generated token as soon as it is produced: ``index`` among the generated tokens, absolute ``position``."""
    event = pb.StreamEvent(token=pb.GeneratedToken(index=index, position=position, token=_token(token)))
    return to_wire(event, decoded.wire)


def encode_stream_attribution_row(attribution: Attribution, row: int, decoded: Decoded) -> bytes | dict[str, Any]:
    """Row ``row`` of ``attribution`` (the token at ``attribution.target_positions[row]``) as a StreamEvent."""
    message = pb.AttributionRow(
        method=attribution.method,
        target_position=attribution.target_positions[row],
        scores=to_matrix(np.asarray(attribution.scores)[row : row + 1], float16=decoded.float16),
        target_score=float(attribution.target_scores[row]),
    )
    if attribution.baseline_scores is not None:
        message.baseline_score = float(attribution.baseline_scores[row])
    if attribution.convergence_deltas is not None:
        message.convergence_delta = float(attribution.convergence_deltas[row])
    if attribution.n_steps is not None:
        message.n_steps = attribution.n_steps[row]
    return to_wire(pb.StreamEvent(attribution_row=message), decoded.wire)


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
