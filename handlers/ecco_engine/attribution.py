"""Attribute generated tokens to every earlier token (prompt and previously generated).

For a target token at position ``t`` the explained scalar is a function of the logits at
``t - 1`` and the sources are the input embeddings at positions ``0 .. t-1``. A causal decoder's
position ``t - 1`` sees only positions ``<= t - 1``, so targets are grouped (sorted by position)
and each group runs on the sequence cropped to its last target: rows for earlier targets carry
extra trailing tokens that cannot affect them (their gradients are exactly zero). Every
interpolation step of every target in a group shares one batched forward + backward, within a
memory budget of ``token_budget`` row-tokens per forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import InvalidRequest, NonFiniteResult
from .layout import ModelLayout
from .methods import MethodCall, get_method
from .targets import TargetForward
from .types import Aggregation, Attribution, AttributionParams, TargetKind


@dataclass(frozen=True)
class TargetSet:
    """The tokens to explain: absolute positions (each >= 1) and the ids found there."""

    positions: tuple[int, ...]  # sorted ascending
    token_ids: tuple[int, ...]
    contrast_id: int | None = None


def aggregate(attributions: torch.Tensor, how: Aggregation) -> torch.Tensor:
    """``(rows, n_sources, hidden)`` -> ``(rows, n_sources)``."""
    if how is Aggregation.SUM:
        return attributions.sum(dim=-1)
    norms = attributions.norm(dim=-1)
    if how is Aggregation.L2:
        return norms
    totals = norms.sum(dim=-1, keepdim=True)
    return torch.where(totals > 0, norms / totals.clamp_min(torch.finfo(norms.dtype).tiny), norms)


def baseline_embeddings(layout: ModelLayout, tokenizer, baseline: str, length: int) -> torch.Tensor:
    """The baseline as embeddings ``(1, length, hidden)``: zeros, or one special token everywhere."""
    weight = layout.embedding.weight
    if baseline == "zero":
        return torch.zeros(1, length, weight.shape[1], dtype=weight.dtype, device=weight.device)
    token_id = getattr(tokenizer, f"{baseline}_token_id", None)
    if token_id is None:
        raise InvalidRequest("baseline", f"the tokenizer has no {baseline} token; choose another baseline")
    return weight[int(token_id)].detach().view(1, 1, -1).expand(1, length, -1).clone()


def _groups(positions: tuple[int, ...], token_budget: int, *, share: bool = True) -> list[list[int]]:
    """Split target indices (sorted by position) so that rows x cropped length <= budget.

    ``share=False`` gives every target its own group: a path method already has ``n_steps`` rows
    per target to batch, and sharing a group would run earlier targets' rows at the group's last
    (longest) length. Measured on the default model (benchmarks/sharing.py): one target per group
    took 79 CPU s where one shared group took 122 CPU s for the same IG work.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    for i, pos in enumerate(positions):
        if current and (not share or (len(current) + 1) * pos > token_budget):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def _run_method(
    method_name: str,
    forward: TargetForward,
    embeddings: torch.Tensor,
    baseline: torch.Tensor,
    targets: TargetSet,
    indices: list[int],
    n_steps: int,
    params: AttributionParams,
    token_budget: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One group of targets -> attributions ``(len(indices), length, hidden)`` and deltas."""
    method = get_method(method_name)
    length = max(targets.positions[i] for i in indices)
    rows = len(indices)
    device = embeddings.device
    args = (
        torch.tensor([targets.positions[i] - 1 for i in indices], device=device),
        torch.tensor([targets.token_ids[i] for i in indices], device=device),
        torch.tensor([targets.contrast_id or 0] * rows, device=device),
    )
    call = MethodCall(
        inputs=embeddings[:, :length].expand(rows, -1, -1).clone(),
        baselines=baseline[:, :length].expand(rows, -1, -1).clone(),
        forward_args=args,
        n_steps=n_steps,
        integration=params.integration.value,
        rows_per_forward=max(1, token_budget // length),
    )
    with torch.enable_grad():
        return method.attribute(forward, call)


@dataclass(frozen=True)
class AttributionRow:
    """One explained token's finished row, as soon as it is computed (for streaming)."""

    method: str
    target_position: int
    scores: np.ndarray  # (target_position,): one score per earlier token
    target_score: float
    convergence_delta: float | None = None
    #: IG only: the target function at the baseline, and the steps used for this row
    baseline_score: float | None = None
    n_steps: int | None = None


def attribute_tokens(
    model: nn.Module,
    layout: ModelLayout,
    tokenizer,
    input_ids: list[int],
    targets: TargetSet,
    params: AttributionParams,
    method_name: str,
    token_budget: int = 1024,
) -> Attribution:
    """Attribute each target of ``targets`` to the tokens before it, with one method."""
    *_, result = iter_attribute_tokens(
        model, layout, tokenizer, input_ids, targets, params, method_name, token_budget=token_budget
    )
    assert isinstance(result, Attribution)  # the generator's contract: its last item
    return result


def iter_attribute_tokens(
    model: nn.Module,
    layout: ModelLayout,
    tokenizer,
    input_ids: list[int],
    targets: TargetSet,
    params: AttributionParams,
    method_name: str,
    token_budget: int = 1024,
) -> Iterator[AttributionRow | Attribution]:
    """Like ``attribute_tokens``, yielding each ``AttributionRow`` once final, then the ``Attribution``.

    Without a completeness tolerance a row is final when its group is computed; with one, when
    the tolerance loop is done.
    """
    method = get_method(method_name)
    device = layout.embedding.weight.device
    ids = torch.tensor([input_ids], device=device)
    n_sources = max(targets.positions)
    embeddings = layout.embedding(ids).detach()
    forward = TargetForward(model, layout.unembedding, params.target)
    baseline = baseline_embeddings(layout, tokenizer, params.baseline, ids.shape[1]) if method.uses_baseline else None

    n_targets = len(targets.positions)
    per_source = torch.zeros(n_targets, n_sources, dtype=torch.float64)
    deltas = torch.zeros(n_targets, dtype=torch.float64) if method.uses_baseline else None
    steps_used = [params.n_steps] * n_targets
    with forward.attach():
        all_positions = torch.tensor([p - 1 for p in targets.positions], device=device)
        token_ids = torch.tensor(targets.token_ids, device=device)
        contrast = torch.full_like(token_ids, targets.contrast_id or 0)
        with torch.no_grad():
            target_scores = forward(embeddings.expand(n_targets, -1, -1), all_positions, token_ids, contrast)
            baseline_scores = (
                forward(baseline.expand(n_targets, -1, -1), all_positions, token_ids, contrast)
                if baseline is not None
                else None
            )
        pending = list(range(n_targets))
        n_steps = params.n_steps
        tolerance = params.completeness_tolerance
        looping = deltas is not None and tolerance is not None

        def assemble() -> Attribution:
            """The attribution as computed so far (all of it, once the loop is done)."""
            return Attribution(
                method=method_name,
                target=params.target,
                aggregation=params.aggregation,
                target_positions=tuple(targets.positions),
                scores=per_source.float().numpy(),
                target_scores=target_scores.detach().double().numpy(),
                contrast_token_id=targets.contrast_id if params.target is TargetKind.CONTRASTIVE else None,
                baseline=params.baseline if method.uses_baseline else None,
                n_steps=tuple(steps_used) if method.uses_baseline else None,
                integration=params.integration if method.uses_baseline else None,
                baseline_scores=baseline_scores.detach().double().numpy() if baseline_scores is not None else None,
                convergence_deltas=deltas.numpy() if deltas is not None else None,
            )

        def row_of(i: int) -> AttributionRow:
            end = targets.positions[i]
            row = per_source[i, :end].float().numpy()
            delta = float(deltas[i]) if deltas is not None else None
            if not np.isfinite(row).all() or (delta is not None and not np.isfinite(delta)):
                _check_finite(assemble())
            base = float(baseline_scores[i]) if baseline_scores is not None else None
            steps = steps_used[i] if method.uses_baseline else None
            return AttributionRow(method_name, end, row, float(target_scores[i]), delta, base, steps)

        while pending:
            positions = tuple(targets.positions[i] for i in pending)
            for group in _groups(positions, token_budget, share=not method.uses_baseline):
                indices = [pending[g] for g in group]
                attr, delta = _run_method(
                    method_name, forward, embeddings, baseline if baseline is not None else embeddings,
                    targets, indices, n_steps, params, token_budget,
                )  # fmt: skip
                scores = aggregate(attr.detach().double(), params.aggregation)
                for row, i in enumerate(indices):
                    end = targets.positions[i]
                    per_source[i, :end] = scores[row, :end]  # the rest of the row stays 0
                    steps_used[i] = n_steps
                    if deltas is not None and delta is not None:
                        deltas[i] = float(delta[row])
                if not looping:
                    yield from (row_of(i) for i in indices)
            if deltas is None or tolerance is None or n_steps * 2 > params.step_ceiling:
                break
            pending = [i for i in pending if abs(float(deltas[i])) > tolerance]
            n_steps *= 2
        if looping:
            yield from (row_of(i) for i in range(n_targets))

        result = assemble()
    _check_finite(result)
    yield result


def _check_finite(result: Attribution) -> None:
    arrays = {"scores": result.scores, "target_scores": result.target_scores}
    if result.convergence_deltas is not None:
        arrays["convergence_deltas"] = result.convergence_deltas
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        hint = ""
        if result.baseline == "zero":
            hint = (
                " The all-zero embedding baseline is ill-conditioned for models that normalize their input"
                " (RMSNorm of a zero vector); use a token baseline such as 'eos'."
            )
        raise NonFiniteResult(f"{result.method} produced NaN or infinity in {', '.join(bad)}.{hint}")
