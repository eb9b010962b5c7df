"""Typed requests, limits and results for looking inside the model: frozen dataclasses, numpy arrays.

Layers and blocks (docs/internals.md, "Layers and blocks", defines them once):

* **layer** ``l`` in ``0 .. n_layers`` (layer predictions, token rankings, watch list, similarity
  ``hidden``): the residual stream as in Hugging Face's ``hidden_states``; ``0`` is the input to the
  first block (token + position embeddings, after any embedding scaling), ``b + 1`` the output of
  block ``b``, ``n_layers`` the output of the last block — whose lens is the model's own output
  distribution. There are ``n_layers + 1``.
* **block** ``b`` in ``0 .. n_layers-1`` (activations, NMF, interventions, similarity ``ffn``): the
  decoder block; block ``b``'s FFNN activation is the vector entering its MLP down-projection.

Positions are absolute indices into the sequence (prompt + generated). Model-free checks live in
``__post_init__``; checks that need the model, the sequence or the server's limits live in
``inspect.validate_params``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np

from ..errors import InvalidRequest

INTERVENTION_MODES = ("set", "scale")
ACTIVATION_ORDERS = ("value", "magnitude")
#: representations compared layer by layer: the residual stream (lens depths) and FFNN activations (blocks)
SIMILARITY_REPRESENTATIONS = ("hidden", "ffn")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(field: str, value: object, low: int) -> None:
    if not _is_int(value) or value < low:
        raise InvalidRequest(field, f"must be an integer >= {low}, got {value!r}")


def _check_indices(field: str, values: tuple[int, ...] | None) -> None:
    if values is None:
        return
    if not isinstance(values, tuple) or not values:
        raise InvalidRequest(field, "must be a non-empty list of integers (omit it for the default)")
    if any(not _is_int(v) or v < 0 for v in values):
        raise InvalidRequest(field, f"must be integers >= 0, got {list(values)}")


@dataclass(frozen=True)
class Intervention:
    """Change one FFNN neuron of one block at every position of every forward.

    ``mode="set"`` replaces the activation with ``value``; ``mode="scale"`` multiplies it by ``value``.
    Checked (with its index in the request) by ``check_interventions``.
    """

    layer: int
    neuron: int
    mode: str = "set"
    value: float = 0.0


def check_interventions(interventions: tuple[Intervention, ...]) -> None:
    """Model-free checks; messages name ``interventions[i].<field>``."""
    for i, item in enumerate(interventions):
        if not isinstance(item, Intervention):
            raise InvalidRequest(f"interventions[{i}]", f"must be an Intervention, got {type(item).__name__}")
        _check_int(f"interventions[{i}].layer", item.layer, 0)
        _check_int(f"interventions[{i}].neuron", item.neuron, 0)
        if item.mode not in INTERVENTION_MODES:
            raise InvalidRequest(f"interventions[{i}].mode", f"must be 'set' or 'scale', got {item.mode!r}")
        value = item.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRequest(f"interventions[{i}].value", f"must be a finite number, got {value!r}")


@dataclass(frozen=True)
class InternalsParams:
    """What to look at inside the model for one sequence. Everything is off by default.

    * ``layer_predictions``: logit lens top-``top_k`` tokens at ``positions`` (``None``: the position
      that predicted each generated token, ``t - 1`` for the token at ``t``; with nothing generated,
      the last prompt position).
    * ``token_rankings``: rank and probability, per lens layer, of every generated token at the
      position that predicted it.
    * ``watch``: candidate tokens (one-token texts such as ``" Paris"`` or ids); their rank per lens
      layer at ``watch_position`` (``None``: the last prompt position, which predicts the first
      generated token).
    * ``activations``: FFNN activations of ``activation_layers`` (block indices, ``None``: all) at
      ``activation_positions`` (``None``: every position, prompt and generated); the top
      ``activation_top_k`` neurons per (layer, position) ordered by ``activation_order``
      (``"value"``: largest first; ``"magnitude"``: largest absolute value first), or with
      ``activation_top_k=None`` the full tensor as float16.
    * ``nmf_components``: NMF of the (negatives clipped to zero) activations of ``nmf_layers``
      (``None``: ``activation_layers``) over ``activation_positions``, with the top
      ``nmf_top_neurons`` neurons per component.
    * ``interventions``: applied by ``neuron_interventions`` around the whole request (generation
      included); ``inspect_sequence`` itself does not apply them.
    * ``similarity``: representations (``"hidden"``: the residual stream at lens depths
      ``0..n_layers``; ``"ffn"``: the FFNN activations of blocks ``0..n_layers-1``) whose layer x
      layer similarity ``similarity_method`` (``linear_cka``, alias ``cka``; ``cca``, ``svcca``,
      ``pwcca``: see ``analysis.similarity``) is returned, over the tokens at ``similarity_positions``
      (``None``: every position) as examples. The method name is checked against the registry by
      ``plan.precheck_params``.
    """

    layer_predictions: bool = False
    top_k: int = 5
    positions: tuple[int, ...] | None = None
    token_rankings: bool = False
    watch: tuple[str | int, ...] = ()
    watch_position: int | None = None
    activations: bool = False
    activation_layers: tuple[int, ...] | None = None
    activation_positions: tuple[int, ...] | None = None
    activation_top_k: int | None = None
    activation_order: str = "value"
    nmf_components: int | None = None
    nmf_layers: tuple[int, ...] | None = None
    nmf_top_neurons: int = 10
    interventions: tuple[Intervention, ...] = ()
    similarity: tuple[str, ...] = ()
    similarity_method: str = "linear_cka"
    similarity_positions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        lists = ("positions", "watch", "activation_layers", "activation_positions", "nmf_layers", "interventions")
        for name in (*lists, "similarity", "similarity_positions"):
            value = getattr(self, name)
            if isinstance(value, list):  # decoders hand over lists; keep the dataclass hashable and frozen
                object.__setattr__(self, name, tuple(value))
        for name in ("layer_predictions", "token_rankings", "activations"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidRequest(name, f"must be true or false, got {getattr(self, name)!r}")
        _check_int("top_k", self.top_k, 1)
        _check_indices("positions", self.positions)
        if not isinstance(self.watch, tuple):
            raise InvalidRequest("watch", "must be a list of one-token strings or token ids")
        for i, token in enumerate(self.watch):
            if isinstance(token, bool) or not isinstance(token, (str, int)) or token == "":
                raise InvalidRequest(f"watch[{i}]", f"must be a one-token string or a token id, got {token!r}")
        if self.watch_position is not None:
            if not self.watch:
                raise InvalidRequest("watch_position", "is only meaningful with a non-empty 'watch' list")
            _check_int("watch_position", self.watch_position, 0)
        _check_indices("activation_layers", self.activation_layers)
        _check_indices("activation_positions", self.activation_positions)
        if self.activation_top_k is not None:
            _check_int("activation_top_k", self.activation_top_k, 1)
        if self.activation_order not in ACTIVATION_ORDERS:
            raise InvalidRequest("activation_order", f"must be 'value' or 'magnitude', got {self.activation_order!r}")
        if self.nmf_components is not None:
            _check_int("nmf_components", self.nmf_components, 1)
        _check_indices("nmf_layers", self.nmf_layers)
        if self.nmf_layers is not None and self.nmf_components is None:
            raise InvalidRequest("nmf_layers", "is only meaningful with 'nmf_components'")
        _check_int("nmf_top_neurons", self.nmf_top_neurons, 1)
        if not isinstance(self.interventions, tuple):
            raise InvalidRequest("interventions", "must be a list of interventions")
        check_interventions(self.interventions)
        self._check_similarity()

    def _check_similarity(self) -> None:
        if not isinstance(self.similarity, tuple):
            raise InvalidRequest("similarity", "must be a list of representations: 'hidden' and/or 'ffn'")
        for i, name in enumerate(self.similarity):
            if name not in SIMILARITY_REPRESENTATIONS:
                raise InvalidRequest(
                    f"similarity[{i}]",
                    f"must be 'hidden' (residual stream) or 'ffn' (FFNN activations), got {name!r}",
                )
        if len(set(self.similarity)) != len(self.similarity):
            raise InvalidRequest("similarity", f"names a representation twice: {list(self.similarity)}")
        if not isinstance(self.similarity_method, str) or not self.similarity_method:
            raise InvalidRequest("similarity_method", f"must be a method name, got {self.similarity_method!r}")
        _check_indices("similarity_positions", self.similarity_positions)
        if self.similarity_positions is not None and not self.similarity:
            raise InvalidRequest("similarity_positions", "is only meaningful with a non-empty 'similarity' list")

    @property
    def needs_forward(self) -> bool:
        """True when ``inspect_sequence`` has anything to compute."""
        return bool(
            self.layer_predictions
            or self.token_rankings
            or self.watch
            or self.activations
            or self.nmf_components is not None
            or self.similarity
        )


@dataclass(frozen=True)
class InternalsLimits:
    """Server-side limits; beyond them ``LimitExceeded`` names the field and the limit."""

    max_top_k: int = 100  # top_k, activation_top_k, nmf_top_neurons
    max_positions: int = 256  # layer-prediction positions
    max_watch: int = 32  # watched tokens
    max_activation_elements: int = 1_000_000  # numbers returned: layers x positions x (neurons or top-k)
    max_captured_elements: int = 64_000_000  # floats held while capturing activations (memory bound)
    max_nmf_components: int = 32
    max_interventions: int = 64
    lens_chunk_elements: int = 8_000_000  # rows x vocab per unembedding chunk (memory bound, not a user limit)


@dataclass(frozen=True)
class LayerPredictions:
    """Logit lens: the top-k next tokens read from each lens layer's residual stream.

    ``token_ids`` and ``probabilities``: ``(n_positions, n_layers + 1, top_k)``, best first;
    ``probabilities`` are the softmax of the final norm + unembedding (+ the model's logit
    post-processing) of that layer's residual at that position.
    ``output_deviation``: max |p_lens(last layer) - p_model| over these positions and the vocabulary,
    a live check that the lens's last layer is the model's own output (expect ~1e-7 in fp32).
    """

    positions: tuple[int, ...]
    token_ids: np.ndarray
    probabilities: np.ndarray
    output_deviation: float

    @property
    def layers(self) -> range:
        return range(self.token_ids.shape[1])


@dataclass(frozen=True)
class TokenRankings:
    """Rank (0 = top) and probability per lens layer of each generated token where it was predicted.

    ``positions[i]`` is the token's own position (predicted at ``positions[i] - 1``);
    ``ranks`` int64 and ``probabilities`` float32 are ``(n_generated, n_layers + 1)``.
    """

    positions: tuple[int, ...]
    token_ids: tuple[int, ...]
    ranks: np.ndarray
    probabilities: np.ndarray


@dataclass(frozen=True)
class WatchedTokens:
    """Rank and probability per lens layer of the watched tokens at one position.

    ``ranks`` int64 and ``probabilities`` float32 are ``(n_watched, n_layers + 1)``.
    """

    position: int
    token_ids: tuple[int, ...]
    ranks: np.ndarray
    probabilities: np.ndarray

    def overtake_layer(self, winner: int, loser: int) -> int | None:
        """First lens layer from which token ``winner`` stays ranked above ``loser`` to the output.

        Token ids as in ``token_ids``. None when ``winner`` is not above ``loser`` at the last layer.
        """
        a = self.ranks[self.token_ids.index(winner)]
        b = self.ranks[self.token_ids.index(loser)]
        ahead = a < b
        if not ahead[-1]:
            return None
        behind = np.flatnonzero(~ahead)
        return int(behind[-1] + 1) if behind.size else 0


@dataclass(frozen=True)
class NeuronActivations:
    """FFNN activations (inputs of the MLP down-projections) of chosen blocks and positions.

    Either ``values``: the full tensor ``(n_layers, n_positions, n_neurons)`` float16, or the top
    neurons per (layer, position): ``top_indices`` int64 and ``top_values`` float32, both
    ``(n_layers, n_positions, top_k)``, ordered by ``order``.
    """

    layers: tuple[int, ...]
    positions: tuple[int, ...]
    n_neurons: int
    values: np.ndarray | None = None
    top_indices: np.ndarray | None = None
    top_values: np.ndarray | None = None
    order: str = "value"


@dataclass(frozen=True)
class NmfFactors:
    """Ecco's ``run_nmf``: the activations of ``layers`` at ``positions``, negatives clipped to 0,
    as a matrix ``A`` ``(n_positions, n_layers * n_neurons)``, factored ``A ≈ token_strengths.T @ H``.

    ``token_strengths``: ``(n_components, n_positions)``; each component's heaviest neurons (rows of
    ``H``) as ``top_layers`` (block indices), ``top_neurons`` (int64) and ``top_weights`` (float32),
    ``(n_components, n_top)``, heaviest first. ``relative_error`` = ||A - W H||_F / ||A||_F.
    """

    layers: tuple[int, ...]
    positions: tuple[int, ...]
    token_strengths: np.ndarray
    top_layers: np.ndarray
    top_neurons: np.ndarray
    top_weights: np.ndarray
    relative_error: float
    n_iter: int

    @property
    def n_components(self) -> int:
        return int(self.token_strengths.shape[0])

    def component_neurons(self, component: int) -> list[tuple[int, int, float]]:
        """``(layer, neuron, weight)`` of one component's top neurons."""
        return [
            (int(layer), int(neuron), float(weight))
            for layer, neuron, weight in zip(
                self.top_layers[component], self.top_neurons[component], self.top_weights[component], strict=True
            )
        ]


@dataclass(frozen=True)
class LayerSimilarity:
    """One representation's layer x layer similarity over the same tokens.

    ``representation`` ``"hidden"``: ``layers`` are lens depths ``0..n_layers`` (0 = the
    embeddings); ``"ffn"``: block indices ``0..n_layers-1``. ``matrix`` ``(len(layers),
    len(layers))`` float64: ``[i, j]`` = the method's similarity of layer ``layers[i]`` and layer
    ``layers[j]`` (1 on the diagonal for CKA / CCA / SVCCA; symmetric except for PWCCA).
    """

    representation: str
    layers: tuple[int, ...]
    matrix: np.ndarray

    @property
    def labels(self) -> tuple[str, ...]:
        """``emb``, ``h1`` .. ``hN`` (hidden) or ``f0`` .. ``fN-1`` (FFNN blocks), for tables."""
        if self.representation == "hidden":
            return tuple("emb" if d == 0 else f"h{d}" for d in self.layers)
        return tuple(f"f{b}" for b in self.layers)


@dataclass(frozen=True)
class SimilarityMatrices:
    """Representation similarity between layers, one matrix per requested representation.

    ``method``: the canonical method name (``cka`` is reported as ``linear_cka``); the examples are
    the tokens at ``positions`` (absolute, ascending); ``matrices`` in the order requested.
    """

    method: str
    positions: tuple[int, ...]
    matrices: tuple[LayerSimilarity, ...]

    @property
    def n_tokens(self) -> int:
        return len(self.positions)

    def of(self, representation: str) -> LayerSimilarity:
        for item in self.matrices:
            if item.representation == representation:
                return item
        raise KeyError(f"no similarity of {representation!r}; have {[m.representation for m in self.matrices]}")


@dataclass(frozen=True)
class InternalsResult:
    """What ``inspect_sequence`` returns; a field is None when it was not asked for."""

    n_layers: int
    layer_predictions: LayerPredictions | None = None
    token_rankings: TokenRankings | None = None
    watch: WatchedTokens | None = None
    activations: NeuronActivations | None = None
    nmf: NmfFactors | None = None
    similarity: SimilarityMatrices | None = None
