"""Model-randomization sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps").

An attribution that explains the model must change when the model does. ``cascade`` randomizes a
copy of the model cumulatively from the top: the unembedding and final norm, then the decoder blocks
from the last one down, then the input embedding; ``rank_correlations`` compares each explained
token's scores with the original ones (Spearman). A faithful method's correlation falls as more of
the model is randomized; one that stays high explains the input, not the model.

Each randomized tensor is redrawn from a normal distribution with the original tensor's mean and
standard deviation, so the scale of activations stays comparable. A tied unembedding is untied
first, so that randomizing the top does not change the input embeddings.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from ecco_engine import AttributionParams, Explainer
from ecco_engine.attribution import TargetSet, attribute_tokens
from ecco_engine.layout import ModelLayout, discover_layout


@dataclass(frozen=True)
class Stage:
    """One step of the cascade: its name and what is randomized so far (counted from the top)."""

    name: str
    blocks_randomized: int  # decoder blocks, from the last one down
    head_randomized: bool  # unembedding and final norm
    embedding_randomized: bool


def _redraw_(parameter: torch.Tensor, generator: torch.Generator) -> None:
    """Replace ``parameter``'s values in place by normal draws with its mean and standard deviation."""
    data = parameter.detach()
    mean = data.double().mean()
    std = data.double().std() if data.numel() > 1 else torch.zeros((), dtype=torch.float64)
    noise = torch.randn(data.shape, generator=generator, dtype=torch.float64)
    data.copy_((mean + std * noise).to(data.dtype))


def _randomize_(module: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for parameter in module.parameters():
            _redraw_(parameter, generator)


def _untie_unembedding(layout: ModelLayout) -> None:
    """Give the unembedding its own weight if it shares the embedding's."""
    weight = getattr(layout.unembedding, "weight", None)
    if weight is not None and weight.data_ptr() == layout.embedding.weight.data_ptr():
        layout.unembedding.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)


def default_block_steps(n_blocks: int) -> tuple[int, ...]:
    """Blocks randomized at each stage: 1, 2, 4, ... and then all of them."""
    steps = []
    k = 1
    while k < n_blocks:
        steps.append(k)
        k *= 2
    return (*steps, n_blocks)


def cascade(
    model: nn.Module, *, block_steps: Sequence[int] | None = None, seed: int = 0
) -> Iterator[tuple[Stage, nn.Module]]:
    """Yield ``(stage, model)``: first the original model, then ONE copy randomized cumulatively from
    the top (the same object, further randomized at every stage; do not keep it across stages)."""
    yield Stage("original", 0, False, False), model
    randomized = copy.deepcopy(model)
    layout = discover_layout(randomized)
    _untie_unembedding(layout)
    generator = torch.Generator().manual_seed(seed)
    _randomize_(layout.unembedding, generator)
    _randomize_(layout.final_norm, generator)
    yield Stage("unembedding + final norm", 0, True, False), randomized
    n_blocks = len(layout.blocks)
    done = 0
    for k in block_steps or default_block_steps(n_blocks):
        for block in reversed(layout.blocks[n_blocks - k : n_blocks - done]):
            _randomize_(block, generator)
        done = k
        yield Stage(f"+ top {k} of {n_blocks} blocks", k, True, False), randomized
    _randomize_(layout.embedding, generator)
    yield Stage("+ input embedding (everything)", n_blocks, True, True), randomized


def rank_correlations(original: np.ndarray, other: np.ndarray, target_positions: Sequence[int]) -> np.ndarray:
    """Spearman correlation of each explained token's scores (its sources ``0 .. t-1``), ``(n_targets,)``;
    NaN where either row is constant (a correlation is undefined there)."""
    out = np.full(len(target_positions), np.nan)
    for i, t in enumerate(target_positions):
        a, b = original[i, :t], other[i, :t]
        if t > 1 and np.ptp(a) > 0 and np.ptp(b) > 0:
            out[i] = spearmanr(a, b).statistic
    return out


def cascade_correlations(
    model: nn.Module,
    tokenizer,
    sequences: Sequence[tuple[list[int], TargetSet]],
    params: AttributionParams,
    methods: Sequence[str],
    *,
    block_steps: Sequence[int] | None = None,
    seed: int = 0,
) -> list[tuple[Stage, dict[str, np.ndarray]]]:
    """For every stage of ``cascade``: each method's rank correlations with its original attributions,
    every explained token of every ``(input_ids, targets)`` of ``sequences`` concatenated."""
    original: dict[tuple[str, int], np.ndarray] = {}
    out = []
    for stage, current in cascade(model, block_steps=block_steps, seed=seed):
        explainer = Explainer(current, tokenizer)
        correlations: dict[str, list[np.ndarray]] = {name: [] for name in methods}
        for name in methods:
            for s, (input_ids, targets) in enumerate(sequences):
                scores = attribute_tokens(
                    current, explainer.layout, tokenizer, input_ids, targets, params, name,
                    memory=explainer.memory, budget=explainer.budget,
                ).scores  # fmt: skip
                reference = original.setdefault((name, s), scores)
                correlations[name].append(rank_correlations(reference, scores, targets.positions))
        out.append((stage, {name: np.concatenate(values) for name, values in correlations.items()}))
    return out
