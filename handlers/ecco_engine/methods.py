"""Attribution methods, found by name in a registry. Each is one small class over a Captum method.

A method receives a scalar-valued ``forward(embeddings, *args) -> (rows,)`` and the input
embeddings ``(rows, n_sources, hidden)``; it returns attributions of the same shape and, for
path methods, the convergence delta per row. To add a method, subclass ``AttributionMethod``,
give it a ``name`` and decorate it with ``@register``: the tests parametrize over the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency

from .errors import UnknownMethod

Forward = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MethodCall:
    """Everything one method call needs besides the forward function."""

    inputs: torch.Tensor  # (rows, n_sources, hidden) input embeddings
    baselines: torch.Tensor  # (rows, n_sources, hidden), used by path methods only
    forward_args: tuple[torch.Tensor, ...]  # per-row tensors passed on to forward
    n_steps: int
    integration: str
    rows_per_forward: int  # memory budget: largest batch one forward may see


class AttributionMethod:
    """Base class. ``uses_baseline`` methods also report a convergence delta per row."""

    name: ClassVar[str]
    uses_baseline: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def attribute(self, forward: Forward, call: MethodCall) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


REGISTRY: dict[str, type[AttributionMethod]] = {}


def register(cls: type[AttributionMethod]) -> type[AttributionMethod]:
    REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> AttributionMethod:
    try:
        return REGISTRY[name]()
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownMethod("methods", f"unknown attribution method {name!r}; known: {known}") from None


@register
class IntegratedGradientsMethod(AttributionMethod):
    name = "integrated_gradients"
    uses_baseline = True
    description = "Integrated gradients (Sundararajan et al. 2017) on the input embeddings"

    def attribute(self, forward: Forward, call: MethodCall) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = call.inputs.shape[0]
        attributions, delta = IntegratedGradients(forward).attribute(
            call.inputs,
            baselines=call.baselines,
            additional_forward_args=call.forward_args,
            n_steps=call.n_steps,
            method=call.integration,
            internal_batch_size=max(rows, (call.rows_per_forward // rows) * rows),
            return_convergence_delta=True,
        )
        return attributions, delta


@register
class GradientXInput(AttributionMethod):
    name = "grad_x_input"
    description = "Gradient times input embedding (Shrikumar et al. 2016)"

    def attribute(self, forward: Forward, call: MethodCall) -> tuple[torch.Tensor, torch.Tensor | None]:
        return InputXGradient(forward).attribute(call.inputs, additional_forward_args=call.forward_args), None


@register
class SaliencyMethod(AttributionMethod):
    name = "saliency"
    description = "Gradient of the target w.r.t. the input embedding (aggregate with l2: gradient norm)"

    def attribute(self, forward: Forward, call: MethodCall) -> tuple[torch.Tensor, torch.Tensor | None]:
        grads = Saliency(forward).attribute(call.inputs, abs=False, additional_forward_args=call.forward_args)
        return grads, None
