"""Attribution methods, found by name in a registry, each with explicit capabilities.

Capabilities are class attributes, the way Captum's ``has_convergence_delta`` and
``multiplies_by_inputs`` are: ``attribution.py`` reads them and never asks for a method by name.

- ``needs_baseline``: the method compares the input with a baseline embedding (``attribution.baseline``);
- ``path_steps``: it integrates over ``n_steps`` points (``attribution.n_steps``, ``integration``, the
  completeness-tolerance loop apply);
- ``has_convergence_delta``: it reports ``sum(attributions) - (f(input) - f(baseline))`` per row;
- ``needs_gradients``: it backpropagates (else forwards only);
- ``sampled``: it draws ``attribution.n_samples`` random samples (``default_n_samples`` when not given),
  seeded by ``attribution.sampling_seed``: the same seed gives the same numbers, and the global random state is
  left as it was;
- ``batching``: how the targets of one request share work (``Batching``).

Three kinds of method:

``GradientMethod`` (``Batching.SHARED_FORWARD``): the method names the points where gradients are
taken and their weights (``gradient_points``), and how the weighted gradient sum becomes an
attribution (``combine``). A causal decoder's position ``t - 1`` sees only positions ``<= t - 1``, so
the engine runs ONE forward over the longest prefix at every point and one (batched) backward per
target. The points and weights come from Captum (``approximation_parameters``), so the numbers are
Captum's; tests compare every method with a direct Captum call per token.

``RowMethod`` (``Batching.PER_TARGET_ROWS``): one Captum call per group of targets, each target a
row of the batch on its own cropped prefix (``attribute(forward, call)``); for methods that cannot
share a forward, such as perturbation methods. A sampled row method runs each target in its own call,
seeded alike, so a token's scores do not depend on which other tokens the request explains.

``AttentionMethod`` (``Batching.SINGLE_FORWARD``): one forward over the whole sequence with the eager
attention path; the scores are read from the attention weights, not from the target function.

To add a method: subclass one of the three, give it a ``name`` and its capabilities, decorate it with
``@register``, and add its direct-Captum reference to ``tests/unit/test_attribution.py``
(``REFERENCES``): a method without one fails the test suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import torch

from ..errors import UnknownMethod
from ..types import AttributionParams

Forward = Callable[..., torch.Tensor]


class Batching(Enum):
    """How one method's targets share work."""

    #: one forward over the longest prefix serves every target; one backward per target (batched)
    SHARED_FORWARD = "shared_forward"
    #: each target is a row on its own cropped prefix; rows batched into one Captum call
    PER_TARGET_ROWS = "per_target_rows"
    #: one forward over the whole sequence serves every target; no target function, no backward
    SINGLE_FORWARD = "single_forward"


class AttributionMethod:
    """Base class: a name, a description and the capabilities (see the module doc)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    needs_baseline: ClassVar[bool] = False
    path_steps: ClassVar[bool] = False
    has_convergence_delta: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = True
    sampled: ClassVar[bool] = False
    default_n_samples: ClassVar[int | None] = None
    batching: ClassVar[Batching]

    def n_samples(self, params: AttributionParams) -> int | None:
        """The samples this method draws for ``params`` (None for a method that draws none)."""
        if not self.sampled:
            return None
        return params.n_samples if params.n_samples is not None else self.default_n_samples


@dataclass(frozen=True)
class GradientPoints:
    """Where a gradient method takes gradients: ``points`` ``(n_points, n_sources, hidden)``, the
    weight of each point's gradient in the sum, ``weights`` ``(n_points,)``, and optionally a factor
    each point's gradient is multiplied by before the sum, ``multipliers`` ``(n_points, n_sources, hidden)``
    (GradientSHAP: each sample's own noisy input minus its baseline)."""

    points: torch.Tensor
    weights: torch.Tensor
    multipliers: torch.Tensor | None = None


class GradientMethod(AttributionMethod):
    """A method computed from a weighted sum of input gradients at a few points."""

    batching = Batching.SHARED_FORWARD

    def n_points(self, n_steps: int, params: AttributionParams) -> int:
        """How many points ``gradient_points`` returns (for the cost)."""
        return 1

    def gradient_points(
        self, inputs: torch.Tensor, baselines: torch.Tensor | None, n_steps: int, params: AttributionParams
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
    n_samples: int | None = None  # sampled methods: the samples to draw
    seed: int = 0  # sampled methods: the seed of the draws


class RowMethod(AttributionMethod):
    """A method over one Captum call per group of targets (one row per target)."""

    batching = Batching.PER_TARGET_ROWS
    needs_gradients = False

    def attribute(self, forward: Forward, call: MethodCall) -> torch.Tensor:
        """Attributions ``(rows, n_sources, hidden)``, or ``(rows, n_sources, 1)`` for one score per token, of
        ``forward(embeddings, *args) -> (rows,)``."""
        raise NotImplementedError

    def forwards_per_row(self, n_sources: int, n_samples: int | None) -> int:
        """Forward passes (of one row over ``n_sources`` tokens) one row costs."""
        raise NotImplementedError


class AttentionMethod(AttributionMethod):
    """Scores read from the attention weights of one forward (eager attention)."""

    batching = Batching.SINGLE_FORWARD
    needs_gradients = False

    def combine(self, attentions: tuple[torch.Tensor, ...], queries: torch.Tensor) -> torch.Tensor:
        """Per layer ``(heads, n, n)`` attention weights (query x key) and query positions ``(k,)`` -> ``(k, n)``
        scores: row ``i`` is what position ``queries[i]`` (the one predicting the next token) draws from each
        key position."""
        raise NotImplementedError


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch's global CPU generator seeded with ``seed`` inside the block and restored after it: Captum's
    samplers (``ShapleyValueSampling``'s permutations, ``KernelShap``'s subsets) draw from it, on the CPU
    whatever the model's device."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


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
