"""``inspect_sequence``: one teacher-forced forward of prompt + generated tokens, read from the inside.

The forward runs once, under ``torch.inference_mode``, with hooks that keep only what was asked
for: the residual stream at the lens positions (``n_layers + 1`` depths), the FFNN
activations of the chosen blocks at the chosen positions, and, for the layer x layer similarity,
the residual stream and / or FFNN activations of every layer at the similarity positions; the
unembedding runs only at the layer-prediction positions (to check the lens against the model's own
output). The hooks are gone before any post-processing starts. All limits are checked before the forward.
"""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import torch
from torch import nn

from ..errors import NonFiniteResult
from ..layout import ModelLayout
from .activations import neuron_activations, stacked
from .hooks import (
    PositionStore,
    captured_mlp_activations,
    captured_residual_stream,
    gathered_unembedding,
)
from .lens import LensHead, ranks_of, vocab_size
from .nmf import nmf_factors
from .plan import InspectionPlan, validate_params
from .similarity import captured_for_similarity, similarity_matrices
from .types import (
    InternalsLimits,
    InternalsParams,
    InternalsResult,
    LayerPredictions,
    TokenRankings,
    WatchedTokens,
)


class _LensReader:
    """Fills the lens outputs one depth and one chunk of residual rows at a time."""

    def __init__(self, plan: InspectionPlan, rows: tuple[int, ...], top_k: int, input_ids: list[int]) -> None:
        row_of = {p: r for r, p in enumerate(rows)}
        self.top_k = top_k
        self.lens_rows = torch.tensor([row_of[p] for p in plan.lens_positions], dtype=torch.long)
        self.rank_rows = torch.tensor([row_of[p - 1] for p in plan.ranked_positions], dtype=torch.long)
        self.rank_ids = torch.tensor([input_ids[p] for p in plan.ranked_positions], dtype=torch.long)
        self.watch_row = row_of[plan.watch_position] if plan.watch_position is not None else None
        self.watch_ids = torch.tensor(plan.watch_ids, dtype=torch.long)

    def read(
        self, logits: torch.Tensor, start: int, depth: int, out: dict[str, np.ndarray], own: torch.Tensor | None
    ) -> float:
        """Store this depth's results from the logits ``(chunk_rows, vocab)`` of rows ``start..``.

        With ``own`` (the model's logits at the lens positions) return max |p_lens - p_model| here.
        """
        # the results are small: read them on the CPU whatever device the model is on
        logits = logits.cpu()
        own = own.cpu() if own is not None else None
        probs = torch.softmax(logits, dim=-1)  # NaN/inf anywhere in a row makes the row's results NaN
        stop = start + logits.shape[0]
        deviation = 0.0
        lens = ((self.lens_rows >= start) & (self.lens_rows < stop)).nonzero()[:, 0]
        if lens.numel():
            local = self.lens_rows[lens] - start
            top = torch.topk(probs[local], self.top_k, dim=-1)
            out["lens_ids"][lens.numpy(), depth] = top.indices.numpy()
            out["lens_probs"][lens.numpy(), depth] = top.values.numpy()
            if own is not None:
                deviation = float((probs[local] - torch.softmax(own[lens], dim=-1)).abs().max())
        ranked = ((self.rank_rows >= start) & (self.rank_rows < stop)).nonzero()[:, 0]
        if ranked.numel():
            local, ids = self.rank_rows[ranked] - start, self.rank_ids[ranked]
            out["rank_ranks"][ranked.numpy(), depth] = ranks_of(logits[local], ids).numpy()
            out["rank_probs"][ranked.numpy(), depth] = probs[local].gather(1, ids[:, None])[:, 0].numpy()
        if self.watch_row is not None and start <= self.watch_row < stop:
            row = self.watch_row - start
            out["watch_ranks"][:, depth] = ranks_of(logits[row : row + 1], self.watch_ids[None, :])[0].numpy()
            out["watch_probs"][:, depth] = probs[row, self.watch_ids].numpy()
        return deviation


def inspect_sequence(
    model: nn.Module,
    layout: ModelLayout,
    tokenizer,
    input_ids: list[int],
    prompt_length: int,
    params: InternalsParams,
    limits: InternalsLimits | None = None,
) -> InternalsResult:
    """Layer predictions, token rankings, watch list, FFNN activations, NMF and layer similarity
    for one sequence.

    ``input_ids``: prompt + generated ids, ``(n_tokens,)``; ``input_ids[:prompt_length]`` is the
    prompt. The model runs as it is: inside ``neuron_interventions`` the intervened model.
    """
    limits = limits or InternalsLimits()
    n_tokens = len(input_ids)
    plan = validate_params(params, layout, tokenizer, n_tokens, prompt_length, limits)
    rows, captured = plan.residual_positions, plan.captured_layers
    predictions = rankings = watch = activations = nmf = similarity = None
    if rows or captured or plan.similarity:
        device = next(model.parameters()).device
        with torch.inference_mode():
            with ExitStack() as stack:
                residual = stack.enter_context(captured_residual_stream(layout, rows)) if rows else None
                acts = None
                if captured:
                    acts = stack.enter_context(
                        captured_mlp_activations(
                            layout,
                            captured,
                            positions=plan.activation_positions,
                            max_elements=limits.max_captured_elements,
                        )
                    )
                for_similarity = stack.enter_context(captured_for_similarity(layout, plan))
                stack.enter_context(gathered_unembedding(layout, plan.lens_positions or (n_tokens - 1,)))
                output = model(input_ids=torch.tensor([input_ids], device=device), use_cache=False)
            model_logits = output.logits[0].float()  # (n_lens_positions, vocab) at plan.lens_positions
            del output
            if residual is not None:
                predictions, rankings, watch = _read_lens(
                    model, layout, plan, residual, model_logits, params.top_k, input_ids, limits
                )
            if acts is not None and plan.activation_layers:
                activations = neuron_activations(
                    acts, plan.activation_layers, params.activation_top_k, params.activation_order
                )
            if acts is not None and plan.nmf_layers:
                nmf = nmf_factors(
                    stacked(acts, plan.nmf_layers).numpy(),
                    plan.nmf_layers,
                    plan.activation_positions,
                    int(params.nmf_components or 0),
                    params.nmf_top_neurons,
                )
            if plan.similarity:
                similarity = similarity_matrices(for_similarity, plan)
    if params.token_rankings and rankings is None:  # nothing was generated: no token to rank
        rankings = TokenRankings(
            (), (), np.zeros((0, layout.n_layers + 1), np.int64), np.zeros((0, layout.n_layers + 1), np.float32)
        )
    return InternalsResult(
        n_layers=layout.n_layers,
        layer_predictions=predictions,
        token_rankings=rankings if params.token_rankings else None,
        watch=watch,
        activations=activations,
        nmf=nmf,
        similarity=similarity,
    )


def _read_lens(
    model: nn.Module,
    layout: ModelLayout,
    plan: InspectionPlan,
    residual: PositionStore,
    model_logits: torch.Tensor,
    top_k: int,
    input_ids: list[int],
    limits: InternalsLimits,
) -> tuple[LayerPredictions | None, TokenRankings, WatchedTokens | None]:
    head = LensHead(model, layout)
    depths = layout.n_layers + 1
    n_lens, n_ranked, n_watch = len(plan.lens_positions), len(plan.ranked_positions), len(plan.watch_ids)
    out: dict[str, np.ndarray] = {
        "lens_ids": np.zeros((n_lens, depths, top_k), np.int64),
        "lens_probs": np.zeros((n_lens, depths, top_k), np.float32),
        "rank_ranks": np.zeros((n_ranked, depths), np.int64),
        "rank_probs": np.zeros((n_ranked, depths), np.float32),
        "watch_ranks": np.zeros((n_watch, depths), np.int64),
        "watch_probs": np.zeros((n_watch, depths), np.float32),
    }
    reader = _LensReader(plan, residual.positions(0), top_k, input_ids)
    vocab = vocab_size(layout)
    chunk = max(1, limits.lens_chunk_elements // vocab)
    by_depth = [residual.tensor(depth)[0] for depth in range(depths)]  # each (n_rows, hidden)
    n_rows, total = by_depth[0].shape[0], depths * by_depth[0].shape[0]
    deviation = 0.0
    # (depth, row) pairs flattened and unembedded ``chunk`` at a time: few rows -> several depths per matmul
    for flat_start in range(0, total, chunk):
        flat_stop = min(flat_start + chunk, total)
        pieces = []  # (depth, first row, end row)
        flat = flat_start
        while flat < flat_stop:
            depth, row = divmod(flat, n_rows)
            end = min(n_rows, row + flat_stop - flat)
            pieces.append((depth, row, end))
            flat += end - row
        logits = head(torch.cat([by_depth[d][row:end] for d, row, end in pieces]))
        offset = 0
        for depth, row, end in pieces:
            own = model_logits if depth == depths - 1 else None
            found = reader.read(logits[offset : offset + end - row], row, depth, out, own)
            deviation = max(deviation, found)
            offset += end - row
    for name in ("lens_probs", "rank_probs", "watch_probs"):
        if not np.isfinite(out[name]).all():
            raise NonFiniteResult("the logit lens produced NaN or infinity (non-finite residual stream or logits)")
    predictions = None
    if n_lens:
        predictions = LayerPredictions(plan.lens_positions, out["lens_ids"], out["lens_probs"], deviation)
    rankings = TokenRankings(
        positions=plan.ranked_positions,
        token_ids=tuple(input_ids[p] for p in plan.ranked_positions),
        ranks=out["rank_ranks"],
        probabilities=out["rank_probs"],
    )
    watch = None
    if plan.watch_position is not None:
        watch = WatchedTokens(plan.watch_position, plan.watch_ids, out["watch_ranks"], out["watch_probs"])
    return predictions, rankings, watch
