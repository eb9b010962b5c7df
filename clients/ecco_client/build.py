"""Keyword arguments -> ``ecco.v1.ExplainRequest``; ``None`` leaves a field out (server default)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .build_internals import build_internals

Kind = Literal["generate", "explain"]


def _enum(enum: Any, value: str | int | None, name: str) -> Any:  # an enum number (the stubs type it per enum)
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    names = enum.DESCRIPTOR.values_by_name
    candidate = value.upper().replace("-", "_")
    if candidate in names:
        return names[candidate].number
    allowed = ", ".join(k.lower() for k in names if not k.endswith("UNSPECIFIED"))
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _chat(messages: Iterable[Any]) -> list[pb.ChatMessage]:
    out = []
    for m in messages:
        if isinstance(m, pb.ChatMessage):
            out.append(m)
        elif isinstance(m, dict):
            out.append(pb.ChatMessage(role=m["role"], content=m["content"]))
        else:  # (role, content)
            role, content = m
            out.append(pb.ChatMessage(role=role, content=content))
    return out


def build_request(
    kind: Kind,
    *,
    prompt: str | None = None,
    messages: Iterable[Any] = (),
    continuation: str | None = None,
    max_new_tokens: int | None = None,
    do_sample: bool | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: Sequence[str] = (),
    methods: Sequence[str] = (),
    target: str | None = None,
    contrast: str | int | None = None,
    n_steps: int | None = None,
    integration: str | None = None,
    baseline: str | None = None,
    aggregation: str | None = None,
    positions: Sequence[int] = (),
    completeness_tolerance: float | None = None,
    max_n_steps: int | None = None,
    float16: bool = False,
    attribute: bool = True,
    internals: pb.InternalsParams | Mapping[str, Any] | None = None,
    stream: bool = False,
) -> pb.ExplainRequest:
    """An ``ExplainRequest``. ``messages``: ``(role, content)`` pairs or ``{"role", "content"}`` dicts;
    ``contrast``: a one-token text or a token id; enum options by name, any case ("log_probability").
    ``attribute=False``: no attribution (e.g. internals only). ``internals``: the keyword arguments of
    ``build_internals`` as a dict (``{"layer_predictions": True, "watch": [" Paris", " London"]}``) or
    an ``InternalsParams`` message. ``stream=True`` asks for a stream of ``StreamEvent`` (what
    ``EccoClient.stream`` sends; never on a unary call). The server validates everything else (and
    names the field when something is wrong)."""
    generation = pb.GenerationParams(stop=list(stop))
    for name, value in [
        ("max_new_tokens", max_new_tokens),
        ("do_sample", do_sample),
        ("temperature", temperature),
        ("top_k", top_k),
        ("top_p", top_p),
        ("seed", seed),
    ]:
        if value is not None:
            setattr(generation, name, value)
    attribution = pb.AttributionParams(
        methods=list(methods),
        target=_enum(pb.TargetKind, target, "target"),
        integration=_enum(pb.Integration, integration, "integration"),
        aggregation=_enum(pb.Aggregation, aggregation, "aggregation"),
        positions=list(positions),
        skip=not attribute,
    )
    optional: list[tuple[str, object]] = [
        ("n_steps", n_steps),
        ("baseline", baseline),
        ("completeness_tolerance", completeness_tolerance),
        ("max_n_steps", max_n_steps),
    ]
    for name, given in optional:
        if given is not None:
            setattr(attribution, name, given)
    if isinstance(contrast, str):
        attribution.contrast_token = contrast
    elif contrast is not None:
        attribution.contrast_token_id = contrast
    request = pb.ExplainRequest(
        kind=pb.EXPLAIN if kind == "explain" else pb.GENERATE,
        messages=_chat(messages),
        generation=generation,
        attribution=attribution,
        float16=float16,
    )
    if internals is not None:
        request.internals.CopyFrom(
            internals if isinstance(internals, pb.InternalsParams) else build_internals(**internals)
        )
    if prompt is not None:
        request.prompt = prompt
    if continuation is not None:
        request.continuation = continuation
    if stream:
        request.stream = True
    return request
