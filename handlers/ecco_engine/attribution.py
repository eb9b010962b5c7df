"""Attribute generated tokens to every earlier token (prompt and previously generated).

For a target token at position ``t`` the explained scalar is a function of the logits at
``t - 1`` and the sources are the input embeddings at positions ``0 .. t-1``. A causal decoder's
position ``t - 1`` sees only positions ``<= t - 1``, so for gradient methods
(``Batching.SHARED_FORWARD``) ONE forward over the longest prefix, at every interpolation point,
serves every target: its hidden states are cut at the unembedding (``TargetForward.shared``), the
vocabulary projection is differentiated once for all targets, and each target then needs only a
backward through the decoder from its own position, batched over a few targets at a time
(``torch.autograd.grad(..., is_grads_batched=True)``). The forward runs in segments along the sequence
(``TargetForward.segments``, the KV cache keeping its graph), so a target's backward runs through its
own prefix only, not the longest one. Points per forward, targets per backward and the segments are
sized by the memory budget (``budget.plan``). A row is final (and streamed) as soon as its
backward over the last points is done.

Methods that cannot share a forward (``Batching.PER_TARGET_ROWS``) run one Captum call per group of
targets, each a row on the prefix cropped to the group's last target (a sampled method: one call per
target, seeded alike). Attention methods (``Batching.SINGLE_FORWARD``) read every target's row from one
forward's attention weights.

The passes run in ``AttributionParams.precision`` (autocast); gradients, attributions and scores are
accumulated in float32, or float64 for a float64 model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .budget import MemoryModel, inference_rows, plan
from .deadline import NEVER, Deadline
from .errors import InvalidRequest, NonFiniteResult
from .layout import ModelLayout
from .methods import AttentionMethod, GradientMethod, MethodCall, RowMethod, get_method
from .methods.attention import attention_weights
from .targets import TargetForward
from .types import Aggregation, Attribution, AttributionCost, AttributionParams, Precision, TargetKind

DTYPES = {Precision.BFLOAT16: torch.bfloat16, Precision.FLOAT16: torch.float16}


@dataclass(frozen=True)
class TargetSet:
    """The tokens to explain: absolute positions (each >= 1), the ids found there and, for a contrastive
    target, each one's contrast token id."""

    positions: tuple[int, ...]  # sorted ascending
    token_ids: tuple[int, ...]
    contrast_ids: tuple[int, ...] | None = None  # (n_targets,)


@dataclass(frozen=True)
class Budget:
    """The server's bounds on one attribution's memory."""

    memory_bytes: int
    token_budget: int  # row-tokens per forward


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


def accumulation_dtype(model_dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(model_dtype, torch.float32)


def autocast(precision: Precision, device: torch.device) -> AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (none for float32)."""
    if precision is Precision.FLOAT32:
        return nullcontext()
    if device.type == "cuda" and precision is Precision.BFLOAT16 and not torch.cuda.is_bf16_supported():
        raise InvalidRequest("precision", "this GPU does not support bfloat16; use float16 or float32")
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def _row_groups(positions: tuple[int, ...], token_budget: int) -> list[list[int]]:
    """Split target indices (sorted by position) so that rows x cropped length <= budget."""
    groups: list[list[int]] = []
    current: list[int] = []
    for i, pos in enumerate(positions):
        if current and (len(current) + 1) * pos > token_budget:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


@dataclass(frozen=True)
class _Work:
    """One attribution's inputs, shared by both kinds of method."""

    forward: TargetForward
    embeddings: torch.Tensor  # (1, n, hidden)
    baseline: torch.Tensor | None  # (1, n, hidden)
    targets: TargetSet
    params: AttributionParams

    def positions(self, indices: list[int]) -> torch.Tensor:
        return torch.tensor([self.targets.positions[i] - 1 for i in indices], device=self.embeddings.device)

    def token_ids(self, indices: list[int]) -> torch.Tensor:
        return torch.tensor([self.targets.token_ids[i] for i in indices], device=self.embeddings.device)

    def contrast(self, indices: list[int]) -> torch.Tensor:
        ids = self.targets.contrast_ids
        return torch.tensor(
            [ids[i] if ids is not None else 0 for i in indices], dtype=torch.long, device=self.embeddings.device
        )


@dataclass
class _Backward:
    """The backward token-rows a gradient attribution took: each target's rows times the length of the
    segment it ran through (``method_cost`` counts the longest prefix: an upper bound)."""

    token_rows: int = 0


def _gradient_sums(
    method: GradientMethod,
    work: _Work,
    indices: list[int],
    n_steps: int,
    memory: MemoryModel,
    budget: Budget,
    precision: Precision,
    deadline: Deadline,
    taken: _Backward,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield ``(positions into indices, attributions (k, length, hidden))`` as each group of targets is final,
    counting the backward's token-rows in ``taken``.

    ``deadline`` is checked before every forward chunk and every backward group."""
    ends = [work.targets.positions[i] for i in indices]  # ascending: indices follow the sorted positions
    length = ends[-1]
    device = work.embeddings.device
    acc = accumulation_dtype(work.embeddings.dtype)
    inputs = work.embeddings[0, :length]
    baselines = work.baseline[0, :length] if work.baseline is not None else None
    points = method.gradient_points(inputs, baselines, n_steps, work.params)
    n_points = points.weights.shape[0]
    cut = plan(memory, n_points, ends, budget_bytes=budget.memory_bytes, token_budget=budget.token_budget)
    positions, token_ids, contrast = work.positions(indices), work.token_ids(indices), work.contrast(indices)
    sums = torch.zeros(len(indices), length, inputs.shape[-1], dtype=acc, device=device)
    for start in range(0, n_points, cut.points_per_forward):
        deadline.check(f"attribution:{method.name}")
        last_chunk = start + cut.points_per_forward >= n_points
        chunk = points.points[start : start + cut.points_per_forward].detach().requires_grad_()
        weights = points.weights[start : start + cut.points_per_forward].to(device=device)
        multipliers = (
            points.multipliers[start : start + cut.points_per_forward].to(acc)
            if points.multipliers is not None
            else None
        )
        with autocast(precision, device):
            splits = work.forward.segments(chunk, positions, token_ids, contrast, cut.segments)
            # d(sum_k w_k score_kj)/d(head input): the unembedding differentiated once for every target
            weighted = torch.stack([(s.scores.to(torch.float64) * weights.view(-1, 1)).sum() for s in splits]).sum()
        head_grads = torch.autograd.grad(weighted, [s.head_input for s in splits])  # each (rows, T_k, hidden)
        for k, ((first, last), split, head_grad) in enumerate(zip(cut.segments, splits, head_grads, strict=True)):
            head_grad = head_grad.to(split.hidden.dtype)
            groups = cut.groups(first, last)
            for g, group in enumerate(groups):
                deadline.check(f"attribution:{method.name}")
                outputs = torch.zeros(len(group), *split.hidden.shape, dtype=split.hidden.dtype, device=device)
                for b, j in enumerate(group):
                    outputs[b, :, j - first] = head_grad[:, j - first]
                retain = k < len(splits) - 1 or g < len(groups) - 1  # a later segment's graph holds this one
                if len(group) == 1:
                    (grads,) = torch.autograd.grad(split.hidden, chunk, outputs[0], retain_graph=retain)
                    grads = grads.unsqueeze(0)
                else:
                    (grads,) = torch.autograd.grad(
                        split.hidden, chunk, outputs, retain_graph=retain, is_grads_batched=True
                    )
                taken.token_rows += len(group) * chunk.shape[0] * ends[last]
                grads = grads.to(acc) if multipliers is None else grads.to(acc) * multipliers
                sums[group[0] : group[-1] + 1] += grads.sum(dim=1)
                if last_chunk:
                    attributions = method.combine(
                        inputs.to(acc),
                        baselines.to(acc) if baselines is not None else None,
                        sums[group[0] : group[-1] + 1],
                    )
                    yield group, attributions
        del splits, head_grads, split, head_grad  # nothing of this chunk's graph outlives it


def _row_attributions(
    method: RowMethod,
    work: _Work,
    indices: list[int],
    memory: MemoryModel,
    budget: Budget,
    precision: Precision,
    deadline: Deadline,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield ``(positions into indices, attributions (k, length, hidden or 1))`` group by group
    (``deadline`` checked before each group)."""
    positions = tuple(work.targets.positions[i] for i in indices)
    n_samples = method.n_samples(work.params)
    for group in _method_groups(method, positions, budget.token_budget):
        deadline.check(f"attribution:{method.name}")
        chosen = [indices[g] for g in group]
        length = max(work.targets.positions[i] for i in chosen)
        rows = len(chosen)
        base = work.baseline if work.baseline is not None else work.embeddings
        call = MethodCall(
            inputs=work.embeddings[:, :length].expand(rows, -1, -1).clone(),
            baselines=base[:, :length].expand(rows, -1, -1).clone(),
            forward_args=(work.positions(chosen), work.token_ids(chosen), work.contrast(chosen)),
            # forwards only: bounded by the token budget and by the memory budget (budget.inference_rows)
            rows_per_forward=max(
                1, min(budget.token_budget // length, inference_rows(memory, length, budget_bytes=budget.memory_bytes))
            ),
            n_samples=n_samples,
            seed=work.params.sampling_seed,
        )
        with autocast(precision, work.embeddings.device), torch.no_grad():
            attributions = method.attribute(work.forward.per_row, call)
        yield group, attributions.to(accumulation_dtype(work.embeddings.dtype))


def _method_groups(method: RowMethod, positions: tuple[int, ...], token_budget: int) -> list[list[int]]:
    """How a row method's targets share calls: one target per call for a sampled method (seeded alike,
    so a row does not depend on the others), else rows within the token budget."""
    if method.sampled:
        return [[i] for i in range(len(positions))]
    return _row_groups(positions, token_budget)


def _attention_rows(
    method: AttentionMethod, model: nn.Module, layout: ModelLayout, work: _Work, budget: Budget
) -> torch.Tensor:
    """Every target's row ``(n_targets, n_sources, 1)`` from one forward's attention weights."""
    every = list(range(len(work.targets.positions)))
    attentions = attention_weights(model, layout.unembedding, work.embeddings, len(layout.blocks), budget.memory_bytes)
    return method.combine(attentions, work.positions(every)).unsqueeze(-1)


def method_cost(
    method_name: str,
    params: AttributionParams,
    n_steps: int,
    positions: Sequence[int],
    token_budget: int,
    *,
    scoring: bool = True,
) -> AttributionCost:
    """The token-rows one method takes for targets at ``positions`` (each the length of its prefix), with
    ``n_steps`` path steps, and with the forwards that score the input (and the baseline, for a method with
    a convergence delta) when ``scoring``. Exact for the forwards; a backward counts every source once per
    target and point, an upper bound: a segmented forward's backward runs through its segment only, and
    ``Attribution.cost`` says what it took."""
    method = get_method(method_name)
    length = max(positions)
    forward = (2 if method.has_convergence_delta else 1) * length if scoring else 0
    if isinstance(method, GradientMethod):
        points = method.n_points(n_steps, params)
        return AttributionCost(
            forward_token_rows=forward + points * length, backward_token_rows=points * length * len(positions)
        )
    if isinstance(method, AttentionMethod):
        return AttributionCost(forward_token_rows=forward + length)
    assert isinstance(method, RowMethod)
    n_samples = method.n_samples(params)
    for group in _method_groups(method, tuple(positions), token_budget):
        cropped = max(positions[i] for i in group)
        forward += len(group) * method.forwards_per_row(cropped, n_samples) * cropped
    return AttributionCost(forward_token_rows=forward)


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
    *,
    memory: MemoryModel,
    budget: Budget,
    deadline: Deadline = NEVER,
) -> Attribution:
    """Attribute each target of ``targets`` to the tokens before it, with one method."""
    *_, result = iter_attribute_tokens(
        model, layout, tokenizer, input_ids, targets, params, method_name, memory=memory, budget=budget,
        deadline=deadline,
    )  # fmt: skip
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
    *,
    memory: MemoryModel,
    budget: Budget,
    deadline: Deadline = NEVER,
) -> Iterator[AttributionRow | Attribution]:
    """Like ``attribute_tokens``, yielding each ``AttributionRow`` once final, then the ``Attribution``.

    Without a completeness tolerance a row is final when its group is computed; with one, when
    the tolerance loop is done. Past ``deadline`` it raises ``DeadlineExceeded`` between chunks/groups.
    """
    method = get_method(method_name)
    device = layout.embedding.weight.device
    ids = torch.tensor([input_ids], device=device)
    n_sources = max(targets.positions)
    embeddings = layout.embedding(ids[:, :n_sources]).detach()
    acc = accumulation_dtype(embeddings.dtype)
    precision = params.precision
    baseline = baseline_embeddings(layout, tokenizer, params.baseline, n_sources) if method.needs_baseline else None
    work = _Work(TargetForward(model, layout.unembedding, params.target), embeddings, baseline, targets, params)
    n_targets = len(targets.positions)
    every = list(range(n_targets))
    per_source = torch.zeros(n_targets, n_sources, dtype=torch.float64)
    deltas = torch.zeros(n_targets, dtype=torch.float64) if method.has_convergence_delta else None
    steps_used = [params.n_steps] * n_targets
    cost = AttributionCost()
    with work.forward.attach(), torch.no_grad(), autocast(precision, device):
        target_scores = work.forward.shared(
            embeddings, work.positions(every), work.token_ids(every), work.contrast(every)
        )[0]
        baseline_scores = None
        if deltas is not None and baseline is not None:
            baseline_scores = work.forward.shared(
                baseline, work.positions(every), work.token_ids(every), work.contrast(every)
            )[0]
    target_scores = target_scores.to(acc)
    baseline_scores = baseline_scores.to(acc) if baseline_scores is not None else None
    tolerance = params.completeness_tolerance if method.path_steps and deltas is not None else None
    contrast_ids = targets.contrast_ids if params.target is TargetKind.CONTRASTIVE else None

    def assemble() -> Attribution:
        """The attribution as computed so far (all of it, once the loop is done)."""
        return Attribution(
            method=method_name,
            target=params.target,
            aggregation=params.aggregation,
            target_positions=tuple(targets.positions),
            scores=per_source.float().numpy(),
            target_scores=target_scores.detach().double().cpu().numpy(),
            contrast_token_id=contrast_ids[0] if contrast_ids and params.contrast_token is not None else None,
            contrast_token_ids=contrast_ids,
            baseline=params.baseline if method.needs_baseline else None,
            n_samples=method.n_samples(params),
            sampling_seed=params.sampling_seed if method.sampled else None,
            n_steps=tuple(steps_used) if method.path_steps else None,
            integration=params.integration if method.path_steps else None,
            baseline_scores=baseline_scores.double().cpu().numpy() if baseline_scores is not None else None,
            convergence_deltas=deltas.numpy() if deltas is not None else None,
            precision=precision,
            cost=cost,
        )

    def row_of(i: int) -> AttributionRow:
        end = targets.positions[i]
        row = per_source[i, :end].float().numpy()
        delta = float(deltas[i]) if deltas is not None else None
        if not np.isfinite(row).all() or (delta is not None and not np.isfinite(delta)):
            _check_finite(assemble())
        base = float(baseline_scores[i]) if baseline_scores is not None else None
        steps = steps_used[i] if method.path_steps else None
        return AttributionRow(method_name, end, row, float(target_scores[i]), delta, base, steps)

    def store(indices: list[int], attributions: torch.Tensor, n_steps: int) -> None:
        scores = aggregate(attributions.detach().double(), params.aggregation).cpu()
        for row, i in enumerate(indices):
            end = targets.positions[i]
            per_source[i, :end] = scores[row, :end]  # the rest of the row stays 0
            steps_used[i] = n_steps
            if deltas is not None and baseline_scores is not None:
                total = attributions[row, :end].sum().double()
                deltas[i] = float(total - (target_scores[i].double() - baseline_scores[i].double()))

    pending = every
    n_steps = params.n_steps
    with work.forward.attach(), torch.enable_grad():
        while pending:
            chosen_positions = [targets.positions[i] for i in pending]
            step = method_cost(
                method_name, params, n_steps, chosen_positions, budget.token_budget, scoring=pending is every
            )
            cost = cost + step
            if isinstance(method, GradientMethod):
                taken = _Backward()
                for group, attributions in _gradient_sums(
                    method, work, pending, n_steps, memory, budget, precision, deadline, taken
                ):
                    chosen = [pending[g] for g in group]
                    store(chosen, attributions, n_steps)
                    if tolerance is None:
                        yield from (row_of(i) for i in chosen)
                # what the backward took (segments cut it below the estimate's longest prefix)
                cost = cost + AttributionCost(backward_token_rows=taken.token_rows - step.backward_token_rows)
            elif isinstance(method, AttentionMethod):
                with torch.no_grad(), autocast(precision, device):
                    store(every, _attention_rows(method, model, layout, work, budget), n_steps)
                yield from (row_of(i) for i in every)
            else:
                assert isinstance(method, RowMethod)
                for group, attributions in _row_attributions(
                    method, work, pending, memory, budget, precision, deadline
                ):
                    chosen = [pending[g] for g in group]
                    store(chosen, attributions, n_steps)
                    yield from (row_of(i) for i in chosen)
            if tolerance is None or n_steps * 2 > params.step_ceiling:
                break
            assert deltas is not None
            pending = [i for i in pending if abs(float(deltas[i])) > tolerance]
            n_steps *= 2
    if tolerance is not None:
        yield from (row_of(i) for i in every)
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
