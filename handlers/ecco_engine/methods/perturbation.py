"""Perturbation methods (``RowMethod``, forwards only): each source token is one feature, replaced by the
baseline token's embedding when it is left out. Forwards are batched: ``perturbations_per_eval`` is sized
so that one forward holds at most ``rows_per_forward`` rows."""

from __future__ import annotations

import torch
from captum.attr import FeatureAblation, KernelShap, ShapleyValueSampling

from .base import MethodCall, RowMethod, register, seeded


def token_features(call: MethodCall) -> torch.Tensor:
    """The feature mask ``(1, n_sources, 1)``, broadcast over rows and hidden units: feature ``j`` is every
    hidden unit of source token ``j`` (one element per token: Captum's samplers loop over the mask's elements)."""
    return torch.arange(call.inputs.shape[1], device=call.inputs.device).view(1, -1, 1)


def per_eval(call: MethodCall) -> int:
    """Perturbations per forward: ``rows_per_forward`` rows in all."""
    return max(1, call.rows_per_forward // call.inputs.shape[0])


def sampled(captum_method: type, forward, call: MethodCall) -> torch.Tensor:
    """One seeded call of a Captum sampling method (``n_samples``), one score per source token."""
    with seeded(call.seed):
        attributions = captum_method(forward).attribute(
            call.inputs,
            baselines=call.baselines,
            additional_forward_args=call.forward_args,
            feature_mask=token_features(call),
            n_samples=call.n_samples,
            perturbations_per_eval=per_eval(call),
        )
    return attributions[..., :1]


@register
class OcclusionMethod(RowMethod):
    name = "occlusion"
    description = (
        "Feature ablation: the change of the target when one source token's embedding is replaced by the baseline"
        " token's (Captum FeatureAblation; forwards only)"
    )
    needs_baseline = True

    def attribute(self, forward, call):
        attributions = FeatureAblation(forward).attribute(
            call.inputs,
            baselines=call.baselines,
            additional_forward_args=call.forward_args,
            feature_mask=token_features(call),
            perturbations_per_eval=per_eval(call),
        )
        return attributions[..., :1]  # every hidden unit of a token carries the token's score

    def forwards_per_row(self, n_sources, n_samples):
        return n_sources + 1  # the input, then each token ablated


@register
class ShapleyValueSamplingMethod(RowMethod):
    name = "shapley_value_sampling"
    description = (
        "Shapley values sampled over n_samples random token orders (Castro et al. 2009; Captum"
        " ShapleyValueSampling): each token's mean marginal change of the target when it joins, tokens not yet"
        " joined replaced by the baseline token; seeded, forwards only"
    )
    needs_baseline = True
    sampled = True
    default_n_samples = 8

    def attribute(self, forward, call):
        return sampled(ShapleyValueSampling, forward, call)

    def forwards_per_row(self, n_sources, n_samples):
        assert n_samples is not None  # sampled
        return 1 + n_samples * n_sources  # the all-baseline input, then one token joining at a time


@register
class KernelShapMethod(RowMethod):
    name = "kernel_shap"
    description = (
        "Kernel SHAP (Lundberg & Lee 2017; Captum KernelShap): a linear model fitted to the target over n_samples"
        " random token subsets drawn by the Shapley kernel, left-out tokens replaced by the baseline token;"
        " seeded, forwards only"
    )
    needs_baseline = True
    sampled = True
    default_n_samples = 64

    def attribute(self, forward, call):
        if call.inputs.shape[1] == 1:  # one token: its Shapley value is exact (Captum cannot sample one feature)
            change = forward(call.inputs, *call.forward_args) - forward(call.baselines, *call.forward_args)
            return change.view(-1, 1, 1)
        return sampled(KernelShap, forward, call)

    def forwards_per_row(self, n_sources, n_samples):
        assert n_samples is not None  # sampled
        return 2 if n_sources == 1 else n_samples
