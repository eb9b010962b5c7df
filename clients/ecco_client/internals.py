"""Typed internals of an ``ExplainResult``: layer predictions, token rankings, watch list, FFNN
activations, NMF factors, layer x layer representation similarity. Plain tuples (numpy optional: the
``*_array()`` methods import it).

Two layer numberings: *lens layers* ``0..n_layers`` (0 = the embeddings, ``n_layers`` = the model's
output) for predictions, rankings and the watch list; *blocks* ``0..n_layers-1`` for activations,
NMF and interventions. Positions are absolute positions in ``ExplainResult.tokens``. Ranks: 0 = top.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .matrices import IntRows, Rows
from .messages import from_message


def _array(rows, dtype: str):  # -> numpy.ndarray
    import numpy as np

    return np.asarray(rows, dtype=dtype)


@dataclass(frozen=True)
class PositionPredictions:
    """The logit lens at one position: ``token_ids[layer][i]`` / ``probabilities[layer][i]``, best first."""

    position: int
    token_ids: IntRows  # (n_layers + 1, top_k)
    probabilities: Rows  # (n_layers + 1, top_k)

    def top(self, layer: int) -> list[tuple[int, float]]:
        """``(token_id, probability)`` of the top tokens read at lens ``layer``."""
        return list(zip(self.token_ids[layer], self.probabilities[layer], strict=True))


@dataclass(frozen=True)
class LayerPredictions:
    """Logit lens at the requested positions; ``output_deviation`` checks the last layer against the model."""

    predictions: tuple[PositionPredictions, ...]
    output_deviation: float

    @property
    def positions(self) -> tuple[int, ...]:
        return tuple(p.position for p in self.predictions)

    def at(self, position: int) -> PositionPredictions:
        for p in self.predictions:
            if p.position == position:
                return p
        raise KeyError(f"no layer predictions at position {position}; have {list(self.positions)}")


@dataclass(frozen=True)
class TokenRankings:
    """Rank and probability per lens layer of each generated token at the position that predicted it."""

    positions: tuple[int, ...]  # the generated tokens' own positions
    token_ids: tuple[int, ...]
    ranks: IntRows  # (n_generated, n_layers + 1)
    probabilities: Rows  # (n_generated, n_layers + 1)


def _stays_ahead_from(a: tuple[int, ...], b: tuple[int, ...]) -> int | None:
    """First layer from which rank ``a`` stays better than ``b`` to the output; None if not at the output."""
    if not a[-1] < b[-1]:
        return None
    layer = len(a)
    while layer > 0 and a[layer - 1] < b[layer - 1]:
        layer -= 1
    return layer


@dataclass(frozen=True)
class WatchedTokens:
    """Rank and probability per lens layer of the watched tokens at ``position``."""

    position: int
    token_ids: tuple[int, ...]
    ranks: IntRows  # (n_watched, n_layers + 1)
    probabilities: Rows  # (n_watched, n_layers + 1)
    #: each watched token's text (None where the server sent none)
    texts: tuple[str | None, ...] = ()

    def index(self, token: int | str) -> int:
        """Row of a watched token, by id or by text."""
        if isinstance(token, str):
            if token in self.texts:
                return self.texts.index(token)
        elif token in self.token_ids:
            return self.token_ids.index(token)
        raise KeyError(f"{token!r} is not in the watch list (ids {list(self.token_ids)}, texts {list(self.texts)})")

    def overtake_layer(self, winner: int | str, loser: int | str) -> int | None:
        """First lens layer from which ``winner`` stays ranked above ``loser`` up to the output
        ("at which layer does ' Paris' overtake ' London'"); None when it is not above at the output."""
        return _stays_ahead_from(self.ranks[self.index(winner)], self.ranks[self.index(loser)])

    @property
    def leader(self) -> int:
        """Row of the watched token ranked best at the output."""
        return min(range(len(self.token_ids)), key=lambda i: self.ranks[i][-1])


@dataclass(frozen=True)
class LayerActivations:
    """One block's FFNN activations at ``NeuronActivations.positions``: full ``values`` or the top neurons."""

    layer: int
    values: Rows | None = None  # (n_positions, n_neurons), float16 precision
    top_neurons: IntRows | None = None  # (n_positions, k)
    top_values: Rows | None = None  # (n_positions, k)

    def top(self, row: int, k: int, *, magnitude: bool = False) -> list[tuple[int, float]]:
        """The ``k`` strongest ``(neuron, value)`` at position number ``row`` (from either form)."""
        if self.values is not None:
            values = self.values[row]
            key = (lambda n: abs(values[n])) if magnitude else (lambda n: values[n])
            return [(n, values[n]) for n in sorted(range(len(values)), key=key, reverse=True)[:k]]
        assert self.top_neurons is not None and self.top_values is not None
        return list(zip(self.top_neurons[row], self.top_values[row], strict=True))[:k]


@dataclass(frozen=True)
class NeuronActivations:
    """FFNN activations (inputs of the MLP down-projections) of the requested blocks and positions."""

    positions: tuple[int, ...]
    n_neurons: int
    order: str | None  # "value" / "magnitude" for top neurons; None with full values
    layers: tuple[LayerActivations, ...]

    @property
    def full(self) -> bool:
        return bool(self.layers) and self.layers[0].values is not None

    def layer(self, block: int) -> LayerActivations:
        for item in self.layers:
            if item.layer == block:
                return item
        raise KeyError(f"no activations of block {block}; have {[item.layer for item in self.layers]}")

    def values_array(self):  # -> numpy.ndarray (n_blocks, n_positions, n_neurons) float32
        if not self.full:
            raise ValueError("the reply has the top neurons only (activation_top_k was set)")
        return _array([item.values for item in self.layers], "float32")


@dataclass(frozen=True)
class NmfFactors:
    """NMF of the activations: ``token_strengths[c][j]`` = how strongly component ``c`` fires at
    ``positions[j]``; each component's heaviest neurons as (block, neuron, weight)."""

    layers: tuple[int, ...]
    positions: tuple[int, ...]
    token_strengths: Rows  # (n_components, n_positions)
    top_layers: IntRows  # (n_components, n_top)
    top_neurons: IntRows
    top_weights: Rows
    relative_error: float
    n_iter: int

    @property
    def n_components(self) -> int:
        return len(self.token_strengths)

    def component_neurons(self, component: int) -> list[tuple[int, int, float]]:
        return list(
            zip(self.top_layers[component], self.top_neurons[component], self.top_weights[component], strict=True)
        )


@dataclass(frozen=True)
class LayerSimilarity:
    """One representation's layer x layer similarity: ``matrix[i][j]`` compares ``layers[i]`` and ``layers[j]``.

    ``representation`` ``"hidden"``: lens layers ``0..n_layers`` (0 = the embeddings); ``"ffn"``: blocks.
    """

    representation: str
    layers: tuple[int, ...]
    matrix: Rows  # (n, n)

    @property
    def labels(self) -> tuple[str, ...]:
        """``emb``, ``h1`` .. (hidden) or ``f0``, ``f1`` .. (FFNN blocks)."""
        if self.representation == "hidden":
            return tuple("emb" if d == 0 else f"h{d}" for d in self.layers)
        return tuple(f"f{b}" for b in self.layers)

    def matrix_array(self):  # -> numpy.ndarray (n, n) float64
        return _array(self.matrix, "float64")


@dataclass(frozen=True)
class SimilarityMatrices:
    """Representation similarity between layers over the tokens at ``positions`` (``method`` e.g. linear_cka)."""

    method: str
    positions: tuple[int, ...]
    matrices: tuple[LayerSimilarity, ...]  # in the order requested

    @property
    def n_tokens(self) -> int:
        return len(self.positions)

    def of(self, representation: str) -> LayerSimilarity:
        for item in self.matrices:
            if item.representation == representation:
                return item
        raise KeyError(f"no similarity of {representation!r}; have {[m.representation for m in self.matrices]}")


@dataclass(frozen=True)
class Internals:
    """What the request's ``internals`` asked for; a part is None when it was not asked for."""

    n_layers: int  # decoder blocks; lens layers are 0..n_layers
    layer_predictions: LayerPredictions | None = None
    token_rankings: TokenRankings | None = None
    watch: WatchedTokens | None = None
    activations: NeuronActivations | None = None
    nmf: NmfFactors | None = None
    similarity: SimilarityMatrices | None = None
    #: token id -> its text (decoded alone), for every id in the result the server could decode
    token_texts: Mapping[int, str] = field(default_factory=dict)

    def token_text(self, token_id: int) -> str | None:
        return self.token_texts.get(token_id)

    @classmethod
    def from_proto(cls, m: pb.InternalsResult) -> Internals:
        return from_message(m, cls)
