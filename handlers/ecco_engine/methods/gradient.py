"""Gradient methods (``GradientMethod``): integrated gradients, gradient x input, saliency, GradientSHAP."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from .base import GradientMethod, GradientPoints, register


def _at_input(inputs: torch.Tensor) -> GradientPoints:
    """The one point of a plain gradient method: the input itself, weight 1."""
    return GradientPoints(points=inputs.unsqueeze(0), weights=torch.ones(1, dtype=torch.float64))


@register
class IntegratedGradientsMethod(GradientMethod):
    name = "integrated_gradients"
    description = "Integrated gradients (Sundararajan et al. 2017) on the input embeddings"
    needs_baseline = True
    path_steps = True
    has_convergence_delta = True

    def n_points(self, n_steps, params):
        return n_steps

    def gradient_points(self, inputs, baselines, n_steps, params):
        assert baselines is not None  # needs_baseline
        step_sizes, alphas = approximation_parameters(params.integration.value)  # Captum's quadrature
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

    def gradient_points(self, inputs, baselines, n_steps, params):
        return _at_input(inputs)

    def combine(self, inputs, baselines, gradients):
        return gradients * inputs


@register
class SaliencyMethod(GradientMethod):
    name = "saliency"
    description = "Gradient of the target w.r.t. the input embedding (aggregate with l2: gradient norm)"

    def gradient_points(self, inputs, baselines, n_steps, params):
        return _at_input(inputs)

    def combine(self, inputs, baselines, gradients):
        return gradients


@register
class GradientShapMethod(GradientMethod):
    """Captum ``GradientShap`` with the baseline token as the baseline distribution: for each of
    ``n_samples`` samples, Gaussian noise (``attribution.stdevs``) on the input embeddings and a uniform
    random point between the baseline and the noisy input; the mean of gradient x (noisy input - baseline).

    The draws are Captum's, from ``attribution.sampling_seed``: noise ``torch.normal``
    ``(n_samples, n_sources, hidden)`` on the embeddings' device, then the baseline choice and the
    coefficients from ``numpy.random.RandomState(sampling_seed)``.
    Every target shares one draw over the longest prefix (one shared forward), so the last target equals
    Captum seeded alike exactly, and an earlier target at position ``t`` uses the first ``t`` positions of
    the same noise (equal to Captum for every target when ``stdevs`` is 0).
    """

    name = "gradient_shap"
    description = (
        "GradientSHAP (Lundberg & Lee 2017; Captum GradientShap): expected gradient x (noisy input - baseline)"
        " at random points between the baseline and the input; n_samples, stdevs, sampling_seed"
    )
    needs_baseline = True
    sampled = True
    default_n_samples = 16

    def n_points(self, n_steps, params):
        n_samples = self.n_samples(params)
        assert n_samples is not None  # sampled
        return n_samples

    def gradient_points(self, inputs, baselines, n_steps, params):
        assert baselines is not None  # needs_baseline
        n = self.n_points(n_steps, params)
        generator = torch.Generator(device=inputs.device).manual_seed(params.sampling_seed)
        stdev = torch.tensor(params.stdevs, device=inputs.device).repeat(n, *inputs.shape)
        noisy = inputs.unsqueeze(0) + torch.normal(0, stdev, generator=generator)  # (n, n_sources, hidden)
        draws = np.random.RandomState(params.sampling_seed)
        baselines = baselines.unsqueeze(0)[draws.choice(1, n).tolist()]  # a distribution of one baseline
        alpha = torch.tensor(draws.uniform(0.0, 1.0, n), dtype=inputs.dtype, device=inputs.device).view(-1, 1, 1)
        return GradientPoints(
            points=alpha * noisy + (1.0 - alpha) * baselines,
            weights=torch.full((n,), 1.0 / n, dtype=torch.float64, device=inputs.device),
            multipliers=noisy - baselines,
        )

    def combine(self, inputs, baselines, gradients):
        return gradients
