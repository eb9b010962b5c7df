"""Keyword arguments -> ``ecco.v1.InternalsParams`` (what to look at inside the model); ``None`` or an
empty list leaves a field out (server default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ecco_proto.ecco.v1 import ecco_pb2 as pb

InterventionLike = pb.Intervention | Mapping[str, Any] | tuple[Any, ...] | list[Any] | str


def _enum_number(enum: Any, value: str | int | None, name: str) -> Any:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    names = enum.DESCRIPTOR.values_by_name
    if value.upper() in names:
        return names[value.upper()].number
    allowed = ", ".join(k.lower() for k in names if not k.endswith("UNSPECIFIED"))
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


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
            mode=_enum_number(pb.InterventionMode, mode.strip(), "intervention mode"),
            value=float(value),
        )
    except ValueError as error:
        raise ValueError(f"intervention {text!r}: {error}") from None


def intervention(item: InterventionLike) -> pb.Intervention:
    """An ``Intervention`` from a message, a ``"layer:neuron:mode:value"`` string, a dict or a
    ``(layer, neuron, mode, value)`` tuple."""
    if isinstance(item, pb.Intervention):
        return item
    if isinstance(item, str):
        return parse_intervention(item)
    if isinstance(item, Mapping):
        layer, neuron, mode, value = item["layer"], item["neuron"], item.get("mode"), item.get("value", 0.0)
    else:
        layer, neuron, mode, value = tuple(item)
    mode_number = _enum_number(pb.InterventionMode, mode, "intervention mode")
    return pb.Intervention(layer=layer, neuron=neuron, mode=mode_number, value=value)


def watch_token(token: str | int) -> pb.WatchToken:
    """A watched token: a one-token text (``" Paris"``) or a token id."""
    if isinstance(token, bool) or not isinstance(token, (str, int)):
        raise ValueError(f"a watched token is a one-token text or a token id, got {token!r}")
    return pb.WatchToken(text=token) if isinstance(token, str) else pb.WatchToken(id=token)


def build_internals(
    *,
    layer_predictions: bool = False,
    top_k: int | None = None,
    positions: Sequence[int] = (),
    token_rankings: bool = False,
    watch: Sequence[str | int] = (),
    watch_position: int | None = None,
    activations: bool = False,
    activation_layers: Sequence[int] = (),
    activation_positions: Sequence[int] = (),
    activation_top_k: int | None = None,
    activation_order: str | None = None,
    nmf_components: int | None = None,
    nmf_layers: Sequence[int] = (),
    nmf_top_neurons: int | None = None,
    interventions: Sequence[InterventionLike] = (),
    similarity: Sequence[str] = (),
    similarity_method: str | None = None,
    similarity_positions: Sequence[int] = (),
) -> pb.InternalsParams:
    """``InternalsParams``: names as in ``ecco.v1.InternalsParams``. Positions are absolute sequence
    positions; lens layers 0..n_layers, blocks 0..n_layers-1 (see the proto's comments).
    ``similarity``: ``"hidden"`` and / or ``"ffn"`` (layer x layer similarity, ``similarity_method``
    e.g. ``"linear_cka"``, the server default)."""
    message = pb.InternalsParams(
        layer_predictions=layer_predictions,
        positions=list(positions),
        token_rankings=token_rankings,
        watch=[watch_token(t) for t in watch],
        activations=activations,
        activation_layers=list(activation_layers),
        activation_positions=list(activation_positions),
        activation_order=_enum_number(pb.ActivationOrder, activation_order, "activation_order"),
        nmf_layers=list(nmf_layers),
        interventions=[intervention(i) for i in interventions],
        similarity=[_enum_number(pb.Representation, name, "similarity") for name in similarity],
        similarity_positions=list(similarity_positions),
    )
    for name, value in [
        ("top_k", top_k),
        ("watch_position", watch_position),
        ("activation_top_k", activation_top_k),
        ("nmf_components", nmf_components),
        ("nmf_top_neurons", nmf_top_neurons),
        ("similarity_method", similarity_method),
    ]:
        if value is not None:
            setattr(message, name, value)
    return message
