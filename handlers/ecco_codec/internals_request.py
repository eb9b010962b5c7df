"""``ecco.v1.InternalsParams`` <-> ``ecco_engine.internals.InternalsParams`` (incl. interventions).

Errors name the wire path: ``internals.top_k``, ``internals.watch[1]``, ``internals.interventions[0].mode``.
Empty repeated fields mean "server default" (the engine's ``None``), as everywhere on the wire.
"""

from __future__ import annotations

from typing import Any

from ecco_engine import InvalidRequest
from ecco_engine.internals import InternalsParams, Intervention
from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .fields import present, reraise_at

PREFIX = "internals"
#: proto enum value -> engine string (a test checks both sides are complete)
MODES: dict[int, str] = {pb.SET: "set", pb.SCALE: "scale"}
ORDERS: dict[int, str] = {pb.VALUE: "value", pb.MAGNITUDE: "magnitude"}
REPRESENTATIONS: dict[int, str] = {pb.HIDDEN: "hidden", pb.FFN: "ffn"}
_MODE_OF: dict[str, Any] = {v: k for k, v in MODES.items()}  # the stubs type enum numbers per enum
_ORDER_OF: dict[str, Any] = {v: k for k, v in ORDERS.items()}
_REPRESENTATION_OF: dict[str, Any] = {v: k for k, v in REPRESENTATIONS.items()}

_FLAGS = ("layer_predictions", "token_rankings", "activations")
_OPTIONAL = ("top_k", "watch_position", "activation_top_k", "nmf_components", "nmf_top_neurons", "similarity_method")
_LISTS = ("positions", "activation_layers", "activation_positions", "nmf_layers", "similarity_positions")


def _enum(value: int, table: dict[int, str], path: str) -> str | None:
    if value == 0:  # *_UNSPECIFIED: engine default
        return None
    if value not in table:
        raise InvalidRequest(path, f"unknown enum value {value}")
    return table[value]


def _watch(items: Any) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for i, item in enumerate(items):
        which = item.WhichOneof("token")
        if which is None:
            raise InvalidRequest(f"{PREFIX}.watch[{i}]", "give the token's text or its id")
        out.append(getattr(item, which))
    return tuple(out)


def _interventions(items: Any) -> tuple[Intervention, ...]:
    out = []
    for i, item in enumerate(items):
        mode = _enum(item.mode, MODES, f"{PREFIX}.interventions[{i}].mode") or "set"
        out.append(Intervention(layer=item.layer, neuron=item.neuron, mode=mode, value=item.value))
    return tuple(out)


def _representations(values: Any) -> tuple[str, ...]:
    out = []
    for i, value in enumerate(values):
        name = _enum(value, REPRESENTATIONS, f"{PREFIX}.similarity[{i}]")
        if name is None:
            raise InvalidRequest(f"{PREFIX}.similarity[{i}]", "name a representation: HIDDEN or FFN")
        out.append(name)
    return tuple(out)


def decode_internals(message: pb.InternalsParams) -> InternalsParams:
    """The engine's ``InternalsParams`` for the wire message (omitted fields: engine defaults)."""
    kwargs: dict[str, Any] = {name: True for name in _FLAGS if getattr(message, name)}
    kwargs |= present(message, _OPTIONAL)
    kwargs |= {name: tuple(getattr(message, name)) for name in _LISTS if getattr(message, name)}
    if message.watch:
        kwargs["watch"] = _watch(message.watch)
    order = _enum(message.activation_order, ORDERS, f"{PREFIX}.activation_order")
    if order is not None:
        kwargs["activation_order"] = order
    if message.interventions:
        kwargs["interventions"] = _interventions(message.interventions)
    if message.similarity:
        kwargs["similarity"] = _representations(message.similarity)
    try:
        return InternalsParams(**kwargs)
    except InvalidRequest as error:
        raise reraise_at(error, f"{PREFIX}.{error.field}") from None


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
        activation_order=_ORDER_OF[params.activation_order],
        nmf_layers=list(params.nmf_layers or ()),
        nmf_top_neurons=params.nmf_top_neurons,
        interventions=[
            pb.Intervention(layer=i.layer, neuron=i.neuron, mode=_MODE_OF[i.mode], value=i.value)
            for i in params.interventions
        ],
        similarity=[_REPRESENTATION_OF[r] for r in params.similarity],
        similarity_method=params.similarity_method,
        similarity_positions=list(params.similarity_positions or ()),
    )
    for name in ("watch_position", "activation_top_k", "nmf_components"):
        value = getattr(params, name)
        if value is not None:
            setattr(message, name, value)
    return message
