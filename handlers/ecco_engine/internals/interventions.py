"""Neuron interventions: set or scale chosen FFNN activations during every forward in a block.

The hook is a forward pre-hook on the block's MLP down-projection that returns a modified *copy*
of its input (never in place, so it is safe under autograd too) at every position of every
forward — a full teacher-forced sequence and each KV-cached generation step alike. It is
registered with ``prepend=True`` so it runs before any capture hook: captured activations show
what the down-projection actually received.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from torch import nn

from ..errors import InvalidRequest, LimitExceeded
from ..layout import ModelLayout
from .hooks import ffn_width
from .types import InternalsLimits, Intervention, check_interventions


def validate_interventions(
    layout: ModelLayout, interventions: Sequence[Intervention], limits: InternalsLimits | None = None
) -> tuple[Intervention, ...]:
    """Check types, modes, values and (layer, neuron) ranges against the model and the limits."""
    items = tuple(interventions)
    check_interventions(items)
    limits = limits or InternalsLimits()
    if len(items) > limits.max_interventions:
        raise LimitExceeded(
            "interventions",
            f"at most {limits.max_interventions} interventions per request (limit max_interventions), got {len(items)}",
        )
    for i, item in enumerate(items):
        if item.layer >= layout.n_layers:
            raise InvalidRequest(f"interventions[{i}].layer", f"must be in 0..{layout.n_layers - 1}, got {item.layer}")
        width = ffn_width(layout.mlp_down[item.layer])
        if item.neuron >= width:
            raise InvalidRequest(
                f"interventions[{i}].neuron",
                f"must be in 0..{width - 1} (block {item.layer} has {width} FFNN neurons), got {item.neuron}",
            )
    return items


def _make_hook(changes: list[Intervention]):
    def hook(_module: nn.Module, args: tuple) -> tuple:
        changed = args[0].clone()
        for change in changes:  # in request order: a later change to the same neuron sees the earlier one
            if change.mode == "set":
                changed[..., change.neuron] = change.value
            else:
                changed[..., change.neuron] *= change.value
        return (changed, *args[1:])

    return hook


@contextmanager
def neuron_interventions(
    layout: ModelLayout, interventions: Sequence[Intervention], limits: InternalsLimits | None = None
) -> Iterator[None]:
    """Apply ``interventions`` to every forward inside the block; nothing remains after it.

    Validates first (``InvalidRequest`` naming ``interventions[i].layer`` etc.). An empty list
    registers nothing.
    """
    items = validate_interventions(layout, interventions, limits)
    by_layer: dict[int, list[Intervention]] = {}
    for item in items:
        by_layer.setdefault(item.layer, []).append(item)
    with ExitStack() as stack:
        for layer, changes in sorted(by_layer.items()):
            handle = layout.mlp_down[layer].register_forward_pre_hook(_make_hook(changes), prepend=True)
            stack.callback(handle.remove)
        yield
