"""Memory bounded by design: what a forward with gradients keeps, measured once per model.

``MemoryModel.calibrate`` runs two short probe forwards with gradients on the model's own device and
counts the bytes of every tensor autograd saves for the backward (``saved_tensors_hooks``, parameters
excluded, each storage once). That gives the bytes per row-token, plus a term in length² for models
whose attention keeps the score matrix (eager attention). ``plan`` then picks how many interpolation
points share one forward and how many targets share one batched backward so that their sum stays
within ``EngineLimits.memory_budget_bytes``, and whether the shared forward is cut into segments along
the sequence (``TargetForward.segments``): a segment re-keeps the keys and values of every token before
it, measured by a third probe that runs in two segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import LimitExceeded
from .generation import cache_kwarg, output_cache
from .layout import ModelLayout

PROBE_LENGTHS = (16, 32)
#: float32 bytes of the vocabulary-sized tensors per scored (row, target): logits, their softmax, its gradient
LOGIT_COPIES = 3


@dataclass(frozen=True)
class MemoryModel:
    """Bytes one row of a forward with gradients keeps for the backward: ``per_token * n + per_token_pair * n²``."""

    per_token: float
    per_token_pair: float
    #: attention heads: the backward recomputes one block's attention probabilities, heads x n² per row
    heads: int
    n_blocks: int
    hidden: int
    vocab: int
    itemsize: int
    #: what a segment keeps again for each token of the earlier segments (their keys and values)
    per_cached_token: float = 0.0

    @classmethod
    def calibrate(cls, model: nn.Module, layout: ModelLayout) -> MemoryModel:
        weight = layout.embedding.weight
        parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}

        def kept(length: int, segments: int) -> int:
            """Bytes autograd keeps for a forward of ``length`` tokens run in ``segments`` equal segments."""
            saved: dict[int, int] = {}

            def pack(tensor: torch.Tensor) -> torch.Tensor:
                storage = tensor.untyped_storage()
                if storage.data_ptr() not in parameters:
                    saved[storage.data_ptr()] = storage.nbytes()
                return tensor

            probe = torch.zeros(1, length, weight.shape[1], dtype=weight.dtype, device=weight.device)
            probe.requires_grad_()
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                if segments == 1:
                    model(inputs_embeds=probe, use_cache=False)
                else:
                    half = length // 2
                    cache = output_cache(model(inputs_embeds=probe[:, :half], use_cache=True))
                    model(inputs_embeds=probe[:, half:], use_cache=True, **{cache_kwarg(model): cache})
            return sum(saved.values())

        measured = [kept(length, 1) for length in PROBE_LENGTHS]
        (n1, n2), (b1, b2) = PROBE_LENGTHS, measured
        # b = a n + c n²  through both probes (c >= 0: a term that shrinks with length is noise)
        pair = max(0.0, (b2 / n2 - b1 / n1) / (n2 - n1))
        return cls(
            per_token=max(b1 / n1 - pair * n1, 0.0),
            per_token_pair=pair,
            heads=int(getattr(getattr(model, "config", None), "num_attention_heads", 0) or 1),
            n_blocks=len(layout.blocks),
            hidden=int(weight.shape[1]),
            vocab=int(layout.unembedding.get_parameter("weight").shape[0]),
            itemsize=weight.element_size(),
            # the second segment keeps again what the first half's tokens left in the cache
            per_cached_token=max(0.0, (kept(n2, 2) - b2) / (n2 // 2)),
        )

    def row_bytes(self, length: int) -> float:
        """What one row of ``length`` tokens keeps through the forward."""
        return self.per_token * length + self.per_token_pair * length * length

    def forward_bytes(self, rows: int, length: int, n_targets: int, cached_tokens: int = 0) -> float:
        """A forward of ``rows`` rows scored at ``n_targets`` positions each, with what it keeps; cut into
        segments, each segment re-keeps the ``cached_tokens`` before it (summed over segments)."""
        logits = rows * n_targets * self.vocab * 4 * LOGIT_COPIES
        inputs = 2 * rows * length * self.hidden * self.itemsize  # the points and their gradient
        return rows * (self.row_bytes(length) + self.per_cached_token * cached_tokens) + logits + inputs

    def backward_bytes(self, n_batched: int, rows: int, length: int, n_scored: int) -> float:
        """The working set of one backward batched over ``n_batched`` targets of ``n_scored``: one block's
        gradients (twice: in and out), its attention probabilities and their gradient, the gradients at
        the scored positions and at the input, per target."""
        per_block = 2 * self.row_bytes(length) / max(1, self.n_blocks)
        attention = 2 * self.heads * length * length * 4
        return n_batched * rows * (per_block + attention + (2 * length + n_scored) * self.hidden * 4)


def inference_rows(memory: MemoryModel, length: int, *, budget_bytes: int) -> int:
    """Rows of ``length`` tokens one forward without gradients may batch within ``budget_bytes``: it
    holds one block's tensors at a time (in and out), the attention probabilities and the scored
    position's vocabulary row; at least 1."""
    per_row = 2 * memory.row_bytes(length) / max(1, memory.n_blocks) + memory.heads * length * length * 4
    per_row += memory.vocab * 4 * LOGIT_COPIES
    return max(1, int(HEADROOM * budget_bytes // per_row))


@dataclass(frozen=True)
class GradientPlan:
    """How a gradient method's work is cut: points per forward, targets per batched backward, and the
    segments of the shared forward (``TargetForward.segments``): index runs ``(first, last)`` of the targets,
    sorted by position, each a whole number of backward groups."""

    points_per_forward: int
    targets_per_backward: int
    segments: tuple[tuple[int, int], ...]

    def groups(self, first: int, last: int) -> list[list[int]]:
        """The backward groups of one segment."""
        step = self.targets_per_backward
        return [list(range(g, min(g + step, last + 1))) for g in range(first, last + 1, step)]


#: the share of the budget the plan fills: the rest is for what the model does not count, mostly the allocator
#: (benchmarks/memory.py, 2,000-token IG on a CPU: glibc's heap kept the peak resident memory at 1.26x what
#: the model counts; with MALLOC_MMAP_THRESHOLD_=1048576 it was 0.87x, at 45% more time)
HEADROOM = 0.7
#: targets per batched backward: for IG (32 points) 4 was faster than 1 or 2, for gradient x input (1 point) as
#: fast as 8 or 16, on the default model (benchmarks/plan_sweep.py)
MAX_TARGETS_PER_BACKWARD = 4
#: segments of one shared forward, at most: a backward from segment k runs through the k segments before it,
#: one graph each, and 8 or 16 segments (of 2 or 1 targets) were 25% and 2x slower than 4 on the default model
#: (benchmarks/plan_sweep.py)
MAX_SEGMENTS = 4
#: segment only when that saves at least this share of the backward's token-rows
MIN_SEGMENT_SAVING = 0.1
#: and only with at least this many points per forward: with fewer, a backward is bound by its per-operation
#: overhead, not by its tokens (gradient x input, one row: segmenting saved nothing on the default model)
MIN_SEGMENT_ROWS = 8


def segments(ends: Sequence[int], targets_per_backward: int) -> tuple[tuple[int, int], ...]:
    """Cut the targets (prefix lengths ``ends``, ascending) into at most ``MAX_SEGMENTS`` runs of whole
    backward groups, or one run when that saves less than ``MIN_SEGMENT_SAVING`` of the backward."""
    n = len(ends)
    n_groups = -(-n // targets_per_backward)
    per_segment = -(-n_groups // MAX_SEGMENTS) * targets_per_backward
    runs = tuple((f, min(f + per_segment, n) - 1) for f in range(0, n, per_segment))
    whole = n * ends[-1]
    cut = sum((last - first + 1) * ends[last] for first, last in runs)
    return runs if whole - cut >= MIN_SEGMENT_SAVING * whole else ((0, n - 1),)


def plan(
    memory: MemoryModel, n_points: int, ends: Sequence[int], *, budget_bytes: int, token_budget: int
) -> GradientPlan:
    """The largest cut that fits ``budget_bytes`` (and ``token_budget`` row-tokens per forward) for targets
    whose prefixes are ``ends`` tokens long (ascending); ``LimitExceeded`` when one point for one target does
    not fit. A segmented forward keeps more (the earlier segments' keys and values again); with fewer points
    per forward than ``MIN_SEGMENT_ROWS`` (as a tight budget leaves) the forward is not segmented."""
    length, n_targets = ends[-1], len(ends)
    targets = min(n_targets, MAX_TARGETS_PER_BACKWARD)
    rows = max(1, min(n_points, token_budget // max(1, length)))

    def layout(r: int, t: int) -> tuple[tuple[int, int], ...]:
        return segments(ends, t) if r >= MIN_SEGMENT_ROWS else ((0, n_targets - 1),)

    def fits(r: int, t: int) -> bool:
        cached = sum(ends[first - 1] for first, _ in layout(r, t) if first > 0)
        need = memory.forward_bytes(r, length, n_targets, cached) + memory.backward_bytes(t, r, length, n_targets)
        return need <= HEADROOM * budget_bytes

    while rows > 1 and not fits(rows, targets):
        rows = (rows + 1) // 2
    while targets > 1 and not fits(rows, targets):
        targets = (targets + 1) // 2
    if not fits(rows, targets):
        need = (memory.forward_bytes(1, length, n_targets) + memory.backward_bytes(1, 1, length, n_targets)) / HEADROOM
        raise LimitExceeded(
            "prompt",
            f"attributing {n_targets} token(s) over {length} source tokens needs about {need / 2**20:.0f} MiB for a"
            f" single row; the server's memory budget (memory_budget_bytes) is {budget_bytes / 2**20:.0f} MiB",
        )
    return GradientPlan(points_per_forward=rows, targets_per_backward=targets, segments=layout(rows, targets))
