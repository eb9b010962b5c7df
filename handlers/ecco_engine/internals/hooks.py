"""Forward hooks that only live inside context managers (removed in ``finally``).

* ``captured_mlp_activations``: the input of each chosen block's MLP down-projection — the FFNN
  activation vector after the non-linearity / gating — for every forward run inside the block
  (one teacher-forced forward, or a prompt forward plus one KV-cached forward per token).
* ``captured_residual_stream``: the residual stream at chosen positions before the first block
  and after every block (the logit lens's ``n_layers + 1`` layers, see ``types``).
* ``gathered_unembedding``: the unembedding runs only on chosen positions (the model's own
  logit post-processing still applies to them).

Positions are counted across forwards (``offset``), so with a KV cache position ``p`` is the
``p``-th token the model has processed since the context was entered. Batch size must be 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from ..errors import InvalidRequest, LimitExceeded
from ..layout import ModelLayout


def count_hooks(model: nn.Module) -> int:
    """Forward hooks + forward pre-hooks over every module of ``model`` (tests: nothing leaks)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def ffn_width(module: nn.Module) -> int:
    """Input width of a down-projection: ``nn.Linear.in_features``, GPT-2 ``Conv1D.nx``, else weight."""
    for name in ("in_features", "nx"):
        value = getattr(module, name, None)
        if isinstance(value, int):
            return value
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[1])
    raise InvalidRequest("activation_layers", f"cannot tell the FFNN width of {type(module).__name__}")


def check_layers(field: str, layers: Sequence[int], n_layers: int) -> tuple[int, ...]:
    """Sorted unique block indices, each in ``0..n_layers-1``."""
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise InvalidRequest(field, f"layer {bad[0]} is out of range: this model has blocks 0..{n_layers - 1}")
    return tuple(sorted(set(layers)))


class PositionStore:
    """Per-key ``(batch, seq, features)`` chunks, kept at chosen positions, counted across forwards.

    ``positions=None`` keeps everything. ``max_elements`` bounds the floats held over all keys;
    exceeding it raises ``LimitExceeded`` from inside the forward (the hooks are still removed).
    """

    def __init__(
        self,
        keys: Sequence[int],
        positions: Sequence[int] | None = None,
        max_elements: int | None = None,
        limit_field: str = "activations",
    ) -> None:
        self.keys = tuple(keys)
        self.wanted = None if positions is None else torch.tensor(sorted(set(positions)), dtype=torch.long)
        self.max_elements = max_elements
        self.limit_field = limit_field
        self.chunks: dict[int, list[torch.Tensor]] = {k: [] for k in self.keys}
        self.kept: dict[int, list[int]] = {k: [] for k in self.keys}
        self.offsets: dict[int, int] = dict.fromkeys(self.keys, 0)
        self.n_elements = 0

    def record(self, key: int, values: torch.Tensor) -> None:
        """Keep ``values`` ``(batch, seq, features)`` at the wanted positions of this forward.

        ``(seq, features)`` (OPT flattens batch and sequence before its MLP) is read as batch 1.
        """
        if values.dim() == 2:
            values = values.unsqueeze(0)
        start, seq = self.offsets[key], values.shape[1]
        self.offsets[key] = start + seq
        if self.wanted is None:
            local = torch.arange(seq)
        else:
            in_range = self.wanted[(self.wanted >= start) & (self.wanted < start + seq)]
            local = in_range - start
            if local.numel() == 0:
                return
        kept = values.detach().index_select(1, local.to(values.device)).float().cpu()
        self.n_elements += kept.numel()
        if self.max_elements is not None and self.n_elements > self.max_elements:
            raise LimitExceeded(
                self.limit_field,
                f"capturing would hold more than {self.max_elements} numbers "
                f"(limit max_captured_elements); choose fewer layers or positions",
            )
        self.chunks[key].append(kept)
        self.kept[key].extend(int(p) + start for p in local)

    def tensor(self, key: int) -> torch.Tensor:
        """Everything kept for ``key``: ``(batch, n_kept, features)`` float32, in position order."""
        if not self.chunks[key]:
            raise KeyError(f"nothing was captured for {key}")
        return torch.cat(self.chunks[key], dim=1)

    def positions(self, key: int) -> tuple[int, ...]:
        """The absolute positions kept for ``key`` (the second axis of ``tensor(key)``)."""
        return tuple(self.kept[key])


@contextmanager
def captured_mlp_activations(
    layout: ModelLayout,
    layers: Sequence[int] | None = None,
    *,
    positions: Sequence[int] | None = None,
    max_elements: int | None = None,
) -> Iterator[PositionStore]:
    """Capture the FFNN activations of ``layers`` (block indices; None: all) during the block.

    Yields a ``PositionStore`` keyed by block index: ``store.tensor(i)`` is
    ``(batch, n_positions, n_neurons)`` float32. Interventions (registered with ``prepend``) run
    before this hook, so the store holds what the down-projection actually received.
    """
    chosen = check_layers("activation_layers", range(layout.n_layers) if layers is None else layers, layout.n_layers)
    store = PositionStore(chosen, positions, max_elements)

    def make_hook(layer: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            store.record(layer, args[0])

        return hook

    handles = []
    try:
        for layer in chosen:
            handles.append(layout.mlp_down[layer].register_forward_pre_hook(make_hook(layer)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def _first_tensor(value: object) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    raise TypeError(f"a decoder block returned {type(value).__name__}, expected a tensor or a tuple")


@contextmanager
def captured_residual_stream(
    layout: ModelLayout, positions: Sequence[int], *, max_elements: int | None = None
) -> Iterator[PositionStore]:
    """Capture the residual stream at ``positions``: key 0 = input of block 0, key k = output of block k-1.

    ``store.tensor(k)``: ``(batch, n_positions, hidden)`` float32, for ``k`` in ``0..n_layers``.
    """
    store = PositionStore(range(layout.n_layers + 1), positions, max_elements, limit_field="positions")

    def block_input(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        store.record(0, args[0] if args else kwargs["hidden_states"])

    def make_output_hook(depth: int):
        def hook(_module: nn.Module, _args: tuple, output: object) -> None:
            store.record(depth, _first_tensor(output))

        return hook

    with ExitStack() as stack:
        handle = layout.blocks[0].register_forward_pre_hook(block_input, with_kwargs=True)
        stack.callback(handle.remove)
        for i, block in enumerate(layout.blocks):
            handle = block.register_forward_hook(make_output_hook(i + 1))
            stack.callback(handle.remove)
        yield store


@contextmanager
def gathered_unembedding(layout: ModelLayout, positions: Sequence[int]) -> Iterator[None]:
    """Inside the block, a full-sequence forward's logits are ``(batch, len(positions), vocab)``.

    The unembedding's input ``(batch, seq, hidden)`` is cut to ``positions`` before the vocabulary
    projection, so only those rows are computed; post-processing after it still applies.
    """
    index = torch.tensor(list(positions), dtype=torch.long)

    def gather(_module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        return (hidden.index_select(1, index.to(hidden.device)), *args[1:])

    handle = layout.unembedding.register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()
