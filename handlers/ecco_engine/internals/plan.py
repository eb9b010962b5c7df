"""Resolve ``InternalsParams`` against one model and one sequence, checking every range and limit.

``precheck_params`` needs only the model (run it before generating, so a request that cannot be
served fails before any work); ``validate_params`` also needs the sequence and returns the plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..analysis.similarity import ALIASES, similarity_function
from ..errors import InvalidRequest, LimitExceeded
from ..layout import ModelLayout
from ..tokens import single_token_id
from .hooks import check_layers, ffn_width
from .lens import vocab_size
from .types import InternalsLimits, InternalsParams


@dataclass(frozen=True)
class InspectionPlan:
    """``InternalsParams`` resolved against one model and one sequence (defaults filled in)."""

    n_tokens: int
    lens_positions: tuple[int, ...]  # layer predictions at these positions ((), not asked)
    ranked_positions: tuple[int, ...]  # token rankings of the tokens at these positions
    watch_ids: tuple[int, ...]
    watch_position: int | None
    activation_layers: tuple[int, ...]  # () when activations are not returned
    nmf_layers: tuple[int, ...]  # () when no NMF
    activation_positions: tuple[int, ...]
    similarity: tuple[str, ...] = ()  # representations compared layer by layer (() when not asked)
    similarity_method: str = "linear_cka"  # canonical name
    similarity_positions: tuple[int, ...] = ()  # the tokens used as examples

    @property
    def residual_positions(self) -> tuple[int, ...]:
        """Where the lens is read: sorted union of lens, predicting (t - 1) and watch positions."""
        wanted = set(self.lens_positions) | {p - 1 for p in self.ranked_positions}
        if self.watch_position is not None:
            wanted.add(self.watch_position)
        return tuple(sorted(wanted))

    @property
    def captured_layers(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.activation_layers) | set(self.nmf_layers)))


def _at_most(field: str, value: int, limit: int, limit_name: str) -> None:
    if value > limit:
        raise LimitExceeded(field, f"must be at most {limit} (limit {limit_name}), got {value}")


def _in_sequence(field: str, positions: tuple[int, ...], n_tokens: int) -> tuple[int, ...]:
    bad = [p for p in positions if p >= n_tokens]
    if bad:
        raise InvalidRequest(field, f"position {bad[0]} is out of range: the sequence has positions 0..{n_tokens - 1}")
    return tuple(sorted(set(positions)))


@dataclass(frozen=True)
class CheckedParams:
    """The sequence-independent part of the checks: token ids and block indices resolved."""

    watch_ids: tuple[int, ...]
    activation_layers: tuple[int, ...]  # () when activations are not returned
    nmf_layers: tuple[int, ...]  # () when no NMF
    ffn_width: int  # neurons per captured block (0 when nothing is captured)
    similarity_method: str = "linear_cka"  # canonical name of params.similarity_method


def precheck_params(params: InternalsParams, layout: ModelLayout, tokenizer, limits: InternalsLimits) -> CheckedParams:
    """Every check that needs the model but not the sequence (call it before generating)."""
    vocab = vocab_size(layout)
    if params.layer_predictions:
        _at_most("top_k", params.top_k, limits.max_top_k, "max_top_k")
        if params.top_k > vocab:
            raise InvalidRequest("top_k", f"must be in 1..{vocab} (the model's vocabulary), got {params.top_k}")
    _at_most("watch", len(params.watch), limits.max_watch, "max_watch")
    watch_ids = tuple(single_token_id(tokenizer, token, f"watch[{i}]") for i, token in enumerate(params.watch))
    for i, token_id in enumerate(watch_ids):
        if token_id >= vocab:
            raise InvalidRequest(f"watch[{i}]", f"token id must be in 0..{vocab - 1} (the model's vocabulary)")
    if len(set(watch_ids)) != len(watch_ids):
        raise InvalidRequest("watch", f"names a token twice (ids {list(watch_ids)})")

    all_blocks = range(layout.n_layers)
    act_layers: tuple[int, ...] = ()
    if params.activations:
        act_layers = check_layers("activation_layers", params.activation_layers or all_blocks, layout.n_layers)
        if params.activation_top_k is not None:
            _at_most("activation_top_k", params.activation_top_k, limits.max_top_k, "max_top_k")
    nmf_layers: tuple[int, ...] = ()
    if params.nmf_components is not None:
        nmf_layers = check_layers(
            "nmf_layers", params.nmf_layers or params.activation_layers or all_blocks, layout.n_layers
        )
        _at_most("nmf_components", params.nmf_components, limits.max_nmf_components, "max_nmf_components")
        _at_most("nmf_top_neurons", params.nmf_top_neurons, limits.max_top_k, "max_top_k")
    width = 0
    captured = sorted(set(act_layers) | set(nmf_layers))
    if captured:
        widths = {layer: ffn_width(layout.mlp_down[layer]) for layer in captured}
        if len(set(widths.values())) > 1:
            raise InvalidRequest(
                "activation_layers", f"the chosen blocks differ in FFNN width {widths}; pick one width"
            )
        width = next(iter(widths.values()))
    method = "linear_cka"
    if params.similarity:
        similarity_function(params.similarity_method)  # UnknownMethod naming "similarity_method"
        method = ALIASES.get(params.similarity_method, params.similarity_method)
    return CheckedParams(watch_ids, act_layers, nmf_layers, width, method)


def _residual_width(layout: ModelLayout) -> int:
    """Width of the residual stream: the final norm's weight, else the embedding's."""
    weight = getattr(layout.final_norm, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 1:
        return int(weight.shape[0])
    return int(layout.embedding.embedding_dim)


def similarity_elements(layout: ModelLayout, representations: tuple[str, ...], n_positions: int) -> int:
    """Numbers held for the similarity: captured ``(n_positions, width)`` per layer plus each layer's
    ``(n_positions, n_positions)`` Gram matrix (linear CKA keeps one per layer)."""
    total = 0
    if "hidden" in representations:
        total += (layout.n_layers + 1) * n_positions * (_residual_width(layout) + n_positions)
    if "ffn" in representations:
        total += sum(n_positions * (ffn_width(down) + n_positions) for down in layout.mlp_down)
    return total


def validate_params(
    params: InternalsParams,
    layout: ModelLayout,
    tokenizer,
    n_tokens: int,
    prompt_length: int,
    limits: InternalsLimits,
) -> InspectionPlan:
    """Resolve defaults and check every range and limit, before any forward runs."""
    if not 1 <= prompt_length <= n_tokens:
        raise ValueError(f"prompt_length must be in 1..{n_tokens}, got {prompt_length}")  # the caller's mistake
    checked = precheck_params(params, layout, tokenizer, limits)
    lens: tuple[int, ...] = ()
    if params.layer_predictions:
        if params.positions is not None:
            lens = _in_sequence("positions", params.positions, n_tokens)
        else:
            lens = tuple(range(prompt_length - 1, max(n_tokens - 1, prompt_length)))
        _at_most("positions", len(lens), limits.max_positions, "max_positions")
    ranked = tuple(range(prompt_length, n_tokens)) if params.token_rankings else ()
    watch_position = None
    if checked.watch_ids:
        watch_position = params.watch_position if params.watch_position is not None else prompt_length - 1
        _in_sequence("watch_position", (watch_position,), n_tokens)
    act_positions = tuple(range(n_tokens))
    if params.activation_positions is not None:
        act_positions = _in_sequence("activation_positions", params.activation_positions, n_tokens)
    sim_positions: tuple[int, ...] = ()
    if params.similarity:
        sim_positions = tuple(range(n_tokens))
        if params.similarity_positions is not None:
            sim_positions = _in_sequence("similarity_positions", params.similarity_positions, n_tokens)
        if len(sim_positions) < 2:
            raise InvalidRequest(
                "similarity_positions",
                f"needs at least 2 positions (the tokens are the examples compared), got {len(sim_positions)}",
            )
    plan = InspectionPlan(
        n_tokens,
        lens,
        ranked,
        checked.watch_ids,
        watch_position,
        checked.activation_layers,
        checked.nmf_layers,
        act_positions,
        tuple(params.similarity),
        checked.similarity_method,
        sim_positions,
    )
    n_pos, width = len(act_positions), checked.ffn_width
    if plan.activation_layers:
        per_row = width if params.activation_top_k is None else min(params.activation_top_k, width)
        returned = len(plan.activation_layers) * n_pos * per_row
        if returned > limits.max_activation_elements:
            raise LimitExceeded(
                "activations",
                f"{len(plan.activation_layers)} layers x {n_pos} positions x {per_row} values = {returned} "
                f"numbers; the limit is {limits.max_activation_elements} (limit max_activation_elements): "
                "ask for activation_top_k or fewer activation_layers / activation_positions",
            )
    captured = len(plan.captured_layers) * n_pos * width
    if captured > limits.max_captured_elements:
        raise LimitExceeded(
            "activations",
            f"capturing {len(plan.captured_layers)} layers x {n_pos} positions x {width} neurons = {captured} "
            f"numbers exceeds the limit {limits.max_captured_elements} (limit max_captured_elements)",
        )
    if plan.similarity:
        held = similarity_elements(layout, plan.similarity, len(sim_positions))
        if captured + held > limits.max_captured_elements:
            raise LimitExceeded(
                "similarity",
                f"the similarity of {'+'.join(plan.similarity)} over {len(sim_positions)} positions holds {held} "
                f"numbers (activations and Gram matrices), {captured} more are captured for activations; the limit "
                f"is {limits.max_captured_elements} (limit max_captured_elements): ask for fewer similarity_positions",
            )
    if params.nmf_components is not None and params.nmf_components > n_pos:
        raise InvalidRequest(
            "nmf_components",
            f"must be in 1..{n_pos} (at most the number of positions factored), got {params.nmf_components}",
        )
    return plan
