"""Attribution methods, found by name in a registry, each with explicit capabilities.

Capabilities are class attributes, the way Captum's ``has_convergence_delta`` and
``multiplies_by_inputs`` are: ``attribution.py`` reads them and never asks for a method by name.

- ``needs_baseline``: the method compares the input with a baseline embedding (``attribution.baseline``);
- ``path_steps``: it integrates over ``n_steps`` points (``attribution.n_steps``, ``integration``, the
  completeness-tolerance loop apply);
- ``has_convergence_delta``: it reports ``sum(attributions) - (f(input) - f(baseline))`` per row;
- ``needs_gradients``: it backpropagates (else forwards only);
- ``batching``: how the targets of one request share work (``Batching``).

Two kinds of method:

``GradientMethod`` (``Batching.SHARED_FORWARD``): the method names the points where gradients are
taken and their weights (``gradient_points``), and how the weighted gradient sum becomes an
attribution (``combine``). A causal decoder's position ``t - 1`` sees only positions ``<= t - 1``, so
the engine runs ONE forward over the longest prefix at every point and one (batched) backward per
target. The points and weights come from Captum (``approximation_parameters``), so the numbers are
Captum's; tests compare every method with a direct Captum call per token.

``RowMethod`` (``Batching.PER_TARGET_ROWS``): one Captum call per group of targets, each target a
row of the batch on its own cropped prefix (``attribute(forward, call)``); for methods that cannot
share a forward, such as perturbation methods.

To add a method: subclass one of the two, give it a ``name`` and its capabilities, decorate it with
``@register``, and add its direct-Captum reference to ``tests/unit/test_attribution.py``
(``REFERENCES``): a method without one fails the test suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import torch
from captum.attr import FeatureAblation
from captum.attr._utils.approximation_methods import approximation_parameters

from .errors import UnknownMethod

Forward = Callable[..., torch.Tensor]


class Batching(Enum):
    """How one method's targets share work."""

    #: one forward over the longest prefix serves every target; one backward per target (batched)
    SHARED_FORWARD = "shared_forward"
    #: each target is a row on its own cropped prefix; rows batched into one Captum call
    PER_TARGET_ROWS = "per_target_rows"


class AttributionMethod:
    """Base class: a name, a description and the capabilities (see the module doc)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    needs_baseline: ClassVar[bool] = False
    path_steps: ClassVar[bool] = False
    has_convergence_delta: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = True
    batching: ClassVar[Batching]


@dataclass(frozen=True)
class GradientPoints:
    """Where a gradient method takes gradients: ``points`` ``(n_points, n_sources, hidden)`` and the
    weight of each point's gradient in the sum, ``weights`` ``(n_points,)``."""

    points: torch.Tensor
    weights: torch.Tensor


class GradientMethod(AttributionMethod):
    """A method computed from a weighted sum of input gradients at a few points."""

    batching = Batching.SHARED_FORWARD

    def gradient_points(
        self, inputs: torch.Tensor, baselines: torch.Tensor | None, n_steps: int, integration: str
    ) -> GradientPoints:
        """``inputs``/``baselines`` ``(n_sources, hidden)`` -> the points and their weights."""
        raise NotImplementedError

    def combine(self, inputs: torch.Tensor, baselines: torch.Tensor | None, gradients: torch.Tensor) -> torch.Tensor:
        """The weighted gradient sums ``(targets, n_sources, hidden)`` -> attributions, same shape."""
        raise NotImplementedError


@dataclass(frozen=True)
class MethodCall:
    """Everything one ``RowMethod`` call needs besides the forward function."""

    inputs: torch.Tensor  # (rows, n_sources, hidden) input embeddings
    baselines: torch.Tensor  # (rows, n_sources, hidden), used by methods that need a baseline
    forward_args: tuple[torch.Tensor, ...]  # per-row tensors passed on to forward
    rows_per_forward: int  # memory budget: largest batch one forward may see


class RowMethod(AttributionMethod):
    """A method over one Captum call per group of targets (one row per target)."""

    batching = Batching.PER_TARGET_ROWS

    def attribute(self, forward: Forward, call: MethodCall) -> torch.Tensor:
        """Attributions ``(rows, n_sources, hidden)``, or ``(rows, n_sources, 1)`` for one score per token, of
        ``forward(embeddings, *args) -> (rows,)``."""
        raise NotImplementedError

    def forwards_per_row(self, n_sources: int) -> int:
        """Forward passes one row costs (for the cost estimate)."""
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
class IntegratedGradientsMethod(GradientMethod):
    name = "integrated_gradients"
    description = "Integrated gradients (Sundararajan et al. 2017) on the input embeddings"
    needs_baseline = True
    path_steps = True
    has_convergence_delta = True

    def gradient_points(self, inputs, baselines, n_steps, integration):
        assert baselines is not None  # needs_baseline
        step_sizes, alphas = approximation_parameters(integration)  # Captum's quadrature
        alpha = torch.tensor(alphas(n_steps), dtype=inputs.dtype, device=inputs.device).view(-1, 1, 1)
        weights = torch.tensor(step_sizes(n_steps), dtype=torch.float64, device=inputs.device)
        return GradientPoints(points=baselines + alpha * (inputs - baselines), weights=weights)

    def combine(self, inputs, baselines, gradients):
        assert baselines is not None
        return gradients * (inputs - baselines)


@register
class GradientXInput(GradientMethod):
    name = "grad_x_input"
    description = "Gradient times input embedding (Shrikumar et al. 2016)"

    def gradient_points(self, inputs, baselines, n_steps, integration):
        return GradientPoints(points=inputs.unsqueeze(0), weights=torch.ones(1, dtype=torch.float64))

    def combine(self, inputs, baselines, gradients):
        return gradients * inputs


@register
class SaliencyMethod(GradientMethod):
    name = "saliency"
    description = "Gradient of the target w.r.t. the input embedding (aggregate with l2: gradient norm)"

    def gradient_points(self, inputs, baselines, n_steps, integration):
        return GradientPoints(points=inputs.unsqueeze(0), weights=torch.ones(1, dtype=torch.float64))

    def combine(self, inputs, baselines, gradients):
        return gradients


@register
class OcclusionMethod(RowMethod):
    name = "occlusion"
    description = (
        "Feature ablation: the change of the target when one source token's embedding is replaced by the baseline"
        " token's (Captum FeatureAblation; forwards only)"
    )
    needs_baseline = True
    needs_gradients = False

    def attribute(self, forward, call):
        rows, n_sources, hidden = call.inputs.shape
        # one feature per source position: every hidden unit of a token is ablated together
        mask = torch.arange(n_sources, device=call.inputs.device).view(1, -1, 1).expand(rows, -1, hidden)
        attributions = FeatureAblation(forward).attribute(
            call.inputs,
            baselines=call.baselines,
            additional_forward_args=call.forward_args,
            feature_mask=mask,
            perturbations_per_eval=max(1, call.rows_per_forward // rows),
        )
        return attributions[..., :1]  # every hidden unit of a token carries the token's score

    def forwards_per_row(self, n_sources: int) -> int:
        return n_sources + 1
