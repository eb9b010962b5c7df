"""Keyword arguments -> ``ecco.v1.ExplainRequest`` / ``InternalsParams``, field by field from the descriptors.

The keywords are the proto field names: those of ``ExplainRequest`` (``prompt``, ``messages``,
``continuation``, ``float16``) and, given flat, those of its ``generation`` and ``attribution`` messages
(``max_new_tokens``, ``n_steps`` ...); ``internals`` takes those of ``InternalsParams`` as a dict. A new
proto field is a new keyword with no change here. ``None`` or an empty list leaves a field out (server
default); enums take names in any case. The server validates everything else (and names the field).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ecco_proto.ecco.v1 import ecco_pb2 as pb
from ecco_proto.fields import ItemBuilders, enum_number, fill

Kind = Literal["generate", "explain"]
#: an intervention given as something else than a message or a dict (those ``fill`` takes as they are)
InterventionLike = tuple[Any, ...] | list[Any] | str

#: the request's sections whose fields are given as flat keywords
SECTIONS = ("generation", "attribution")
_SECTION_OF = {
    field.name: section
    for section in SECTIONS
    for field in pb.ExplainRequest.DESCRIPTOR.fields_by_name[section].message_type.fields
}
#: the flat keywords of ``build_request`` that are request fields (``kind`` and ``stream`` are how it
#: is sent, ``internals`` a dict of its own)
REQUEST_OPTIONS = frozenset(
    {f.name for f in pb.ExplainRequest.DESCRIPTOR.fields if f.name not in (*SECTIONS, "kind", "stream", "internals")}
    | set(_SECTION_OF)
)


def parse_intervention(text: str) -> pb.Intervention:
    """``"layer:neuron:set|scale:value"`` (e.g. ``"3:117:set:0"``, ``"5:2:scale:1.5"``) -> ``Intervention``."""
    parts = text.split(":")
    if len(parts) != 4:
        raise ValueError(f"an intervention is layer:neuron:set|scale:value, got {text!r}")
    layer, neuron, mode, value = parts
    try:
        return pb.Intervention(
            layer=int(layer),
            neuron=int(neuron),
            # protoc's stub types an enum field as its enum or name; the message takes the number too
            mode=enum_number(pb.InterventionMode.DESCRIPTOR, mode, "intervention mode"),  # type: ignore[arg-type]
            value=float(value),
        )
    except ValueError as error:
        raise ValueError(f"intervention {text!r}: {error}") from None


def intervention(item: InterventionLike) -> pb.Intervention:
    """An ``Intervention`` from a ``"layer:neuron:mode:value"`` string or a ``(layer, neuron, mode, value)``
    tuple (a message or a dict is taken as it is by ``fill``)."""
    if isinstance(item, str):
        return parse_intervention(item)
    layer, neuron, mode, value = tuple(item)
    return fill(pb.Intervention(), {"layer": layer, "neuron": neuron, "mode": mode, "value": value})


def watch_token(token: str | int) -> pb.WatchToken:
    """A watched token: a one-token text (``" Paris"``) or a token id."""
    if isinstance(token, bool) or not isinstance(token, (str, int)):
        raise ValueError(f"a watched token is a one-token text or a token id, got {token!r}")
    return pb.WatchToken(text=token) if isinstance(token, str) else pb.WatchToken(id=token)


def token_ref(token: str | int) -> pb.TokenRef:
    """A token by its one-token text (``" Rome"``) or its id."""
    if isinstance(token, bool) or not isinstance(token, (str, int)):
        raise ValueError(f"a token is a one-token text or a token id, got {token!r}")
    return pb.TokenRef(text=token) if isinstance(token, str) else pb.TokenRef(id=token)


def char_span(span: str | tuple[int, int] | list[int]) -> pb.CharSpan:
    """A character span from ``"start:end"`` or ``(start, end)``."""
    start, end = span.split(":") if isinstance(span, str) else span
    try:
        return pb.CharSpan(start=int(start), end=int(end))
    except ValueError:
        raise ValueError(f"a span is start:end (character offsets), got {span!r}") from None


def _chat(turn: tuple[str, str]) -> pb.ChatMessage:
    role, content = turn
    return pb.ChatMessage(role=role, content=content)


#: items given as something else than a message or a dict: message full name -> builder
ITEMS: ItemBuilders = {
    "ecco.v1.ChatMessage": _chat,
    "ecco.v1.Intervention": intervention,
    "ecco.v1.WatchToken": watch_token,
    "ecco.v1.TokenRef": token_ref,
    "ecco.v1.CharSpan": char_span,
}


def build_internals(**options: Any) -> pb.InternalsParams:
    """``InternalsParams`` from its field names (``layer_predictions=True, watch=[" Paris", 42]``).

    Positions are absolute sequence positions; lens layers 0..n_layers, blocks 0..n_layers-1 (see the
    proto's comments). ``watch``: one-token texts or ids; ``interventions``: ``"layer:neuron:mode:value"``
    strings, ``(layer, neuron, mode, value)`` tuples, dicts or messages; ``similarity``: ``"hidden"``
    and / or ``"ffn"``."""
    return fill(pb.InternalsParams(), options, ITEMS)


def build_request(
    kind: Kind,
    *,
    contrast: str | int | None = None,
    attribute: bool = True,
    internals: pb.InternalsParams | Mapping[str, Any] | None = None,
    **options: Any,
) -> pb.ExplainRequest:
    """An ``ExplainRequest`` of ``kind`` from field names (see the module doc), plus three conveniences:
    ``contrast`` (a one-token text or a token id: ``contrast_token`` / ``contrast_token_id``),
    ``attribute=False`` (``skip``: no attribution, e.g. internals only) and ``internals`` (the keywords
    of ``build_internals`` as a dict, or an ``InternalsParams`` message). ``messages``: ``(role,
    content)`` pairs or ``{"role", "content"}`` dicts. ``contrast_tokens``: one-token texts or ids, one
    per explained token. ``grouping``: ``{"unit": "words", "spans": ["0:3", (4, 9)], "keep_special": False}``
    (or a ``GroupingParams``). ``stream=True`` asks for a stream of
    ``StreamEvent`` (what ``EccoClient.stream`` sends; never on a unary call)."""
    top: dict[str, Any] = {"kind": kind}
    sections: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for name, value in options.items():
        (sections[_SECTION_OF[name]] if name in _SECTION_OF else top)[name] = value
    if contrast is not None:
        sections["attribution"]["contrast_token" if isinstance(contrast, str) else "contrast_token_id"] = contrast
    if not attribute:
        sections["attribution"]["skip"] = True
    if internals is not None and not isinstance(internals, pb.InternalsParams):
        internals = build_internals(**internals)
    values = {**top, **{name: given for name, given in sections.items() if given}, "internals": internals}
    return fill(pb.ExplainRequest(), values, ITEMS)
