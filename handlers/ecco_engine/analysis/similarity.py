"""Similarity of two representations of the same examples: CCA, SVCCA, PWCCA and linear CKA.

Every function takes two activation matrices over the *same* examples, ``x`` ``(n_examples,
n_neurons_x)`` and ``y`` ``(n_examples, n_neurons_y)`` (the neuron counts may differ), and returns
a float in ``[0, 1]``. Plain numpy / scipy, float64, no model code.

Numerical care, in one place:

* **Centering.** Every neuron is centred over the examples first (all four measures are defined
  on centred data; an uncentred CKA is a different, offset-sensitive quantity).
* **Rank deficiency.** Constant neurons and linearly dependent neurons are removed by an SVD of
  the centred matrix: only directions with singular value ``> max(n, p) * eps * s_max`` are kept
  (numpy's ``matrix_rank`` rule). CCA and its variants work on those orthonormal bases, so a
  duplicated or constant neuron changes nothing.
* **Too few examples.** In the ``n_examples - 1`` dimensional space of centred examples, two
  subspaces of ranks ``r_x`` and ``r_y`` must share ``r_x + r_y - (n - 1)`` directions when that
  is positive, so that many canonical correlations are 1 *by construction*. CCA, SVCCA and PWCCA
  therefore raise ``InvalidRequest`` unless ``n_examples > r_x + r_y`` (which covers "more neurons
  than examples"). No silent regularization: use more examples, SVCCA with fewer kept
  directions, or linear CKA, which has no such limit (it is well defined for ``n < p``).
* **Constant representations** (all-zero after centring) have no similarity: ``InvalidRequest``.

Definitions:

* ``canonical_correlations(x, y)``: the ``min(r_x, r_y)`` canonical correlations, descending: the
  singular values of ``Q_x^T Q_y`` with ``Q`` orthonormal bases of the centred column spaces.
* ``cca``: their mean (Raghu et al. 2017's "mean CCA similarity").
* ``svcca``: keep each representation's top singular directions that hold a share ``keep`` of its
  variance (or the top ``keep`` directions if an int), then ``cca`` (Raghu et al. 2017).
  ``keep=1.0`` keeps every non-null direction and equals ``cca`` exactly.
* ``pwcca``: projection-weighted mean (Morcos et al. 2018): each canonical variate of the
  representation with the smaller rank is weighted by how much of that representation's neurons
  it accounts for, ``alpha_i ∝ sum_j |<h_i, x_j>|``, as in the reference implementation (which
  also weighs by the smaller side). Ties in rank use ``x``, so ``pwcca`` is not symmetric then.
* ``linear_cka``: ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on centred data (Kornblith et al.
  2019); computed on the ``n x n`` Gram matrices when there are fewer examples than neurons.

Known answers (tests/unit/test_analysis_similarity.py): 1 for a representation with itself; CKA
invariant to orthogonal maps and isotropic scaling; CCA invariant to any invertible linear map; for
independent Gaussian ``x`` ``(n, p)`` and ``y`` ``(n, q)``, ``p <= q``, the mean *squared* canonical
correlation has expectation exactly ``q / (n - 1)``, and linear CKA is close to
``sqrt(p q / ((n + p) (n + q)))`` (ratio of the expectations, ``n - 1`` degrees of freedom).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InvalidRequest, UnknownMethod

FIELD = "activations"


def _centred(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as a centred float64 ``(n_examples, n_neurons)`` matrix, or ``InvalidRequest``."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise InvalidRequest(FIELD, f"{name} must be a 2-D (n_examples, n_neurons) matrix, got shape {a.shape}")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise InvalidRequest(FIELD, f"{name} needs at least 2 examples and 1 neuron, got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InvalidRequest(FIELD, f"{name} contains NaN or infinity")
    return a - a.mean(axis=0, keepdims=True)


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xc, yc = _centred(x, "x"), _centred(y, "y")
    if xc.shape[0] != yc.shape[0]:
        raise InvalidRequest(
            FIELD, f"x and y must describe the same examples: {xc.shape[0]} rows vs {yc.shape[0]} rows"
        )
    return xc, yc


def _svd(xc: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(u, s)`` of the centred matrix, truncated to its numerical rank (>= 1)."""
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    tol = s[0] * max(xc.shape) * np.finfo(np.float64).eps if s.size else 0.0
    rank = int((s > tol).sum())
    if rank == 0:
        raise InvalidRequest(FIELD, f"{name} is constant over the examples (zero variance): no similarity")
    return u[:, :rank], s[:rank]


def _check_examples(n: int, rank_x: int, rank_y: int, method: str) -> None:
    if n <= rank_x + rank_y:
        raise InvalidRequest(
            FIELD,
            f"{method} needs more examples than rank(x) + rank(y): n_examples={n}, rank(x)={rank_x}, "
            f"rank(y)={rank_y}; with fewer, {rank_x + rank_y - n + 1} canonical correlation(s) are 1 by "
            "construction. Use more examples, svcca with fewer kept directions, or linear_cka",
        )


def _correlations_of_bases(qx: np.ndarray, qy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rho, u, vt)``: ``qx^T qy = u diag(rho) vt``, ``rho`` clipped to ``[0, 1]``."""
    u, rho, vt = np.linalg.svd(qx.T @ qy, full_matrices=False)
    return np.clip(rho, 0.0, 1.0), u, vt


def canonical_correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The ``min(rank x, rank y)`` canonical correlations of ``x`` and ``y``, descending, in ``[0, 1]``."""
    xc, yc = _pair(x, y)
    (qx, _), (qy, _) = _svd(xc, "x"), _svd(yc, "y")
    _check_examples(xc.shape[0], qx.shape[1], qy.shape[1], "CCA")
    return _correlations_of_bases(qx, qy)[0]


def cca(x: np.ndarray, y: np.ndarray) -> float:
    """Mean canonical correlation of ``x`` ``(n, p)`` and ``y`` ``(n, q)``; 1 for invertible maps of each other."""
    return float(np.mean(canonical_correlations(x, y)))


def _top_directions(xc: np.ndarray, keep: float | int, name: str) -> np.ndarray:
    """``U_k S_k`` ``(n, k)``: the top singular directions holding ``keep`` of the variance (or ``keep`` of them)."""
    u, s = _svd(xc, name)
    if isinstance(keep, (bool, np.bool_)):
        raise InvalidRequest("svcca_keep", f"must be a share in (0, 1] or a count >= 1, got {keep!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 1:
            raise InvalidRequest("svcca_keep", f"a count of directions must be >= 1, got {keep}")
        k = min(int(keep), s.size)
    else:
        if not 0.0 < float(keep) <= 1.0:
            raise InvalidRequest("svcca_keep", f"a share of variance must be in (0, 1], got {keep}")
        share = np.cumsum(s**2) / np.sum(s**2)
        k = s.size if float(keep) >= 1.0 else int(np.searchsorted(share, float(keep) - 1e-12) + 1)
    return u[:, :k] * s[:k]


def svcca(x: np.ndarray, y: np.ndarray, keep: float | int = 0.99) -> float:
    """SVCCA: SVD-reduce each side to the directions holding ``keep`` of its variance (or a count), then CCA."""
    xc, yc = _pair(x, y)
    return cca(_top_directions(xc, keep, "x"), _top_directions(yc, keep, "y"))


def pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """Projection-weighted CCA (Morcos et al. 2018), weighted on the side with the smaller rank."""
    xc, yc = _pair(x, y)
    (qx, _), (qy, _) = _svd(xc, "x"), _svd(yc, "y")
    _check_examples(xc.shape[0], qx.shape[1], qy.shape[1], "PWCCA")
    rho, u, vt = _correlations_of_bases(qx, qy)
    if qx.shape[1] <= qy.shape[1]:
        variates, neurons = qx @ u, xc  # (n, r_x) orthonormal canonical variates of x
    else:
        variates, neurons = qy @ vt.T, yc
    weights = np.abs(variates.T @ neurons).sum(axis=1)  # (r,) how much of the neurons each variate carries
    weights = weights / weights.sum()
    return float(np.dot(weights, rho))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of ``x`` ``(n, p)`` and ``y`` ``(n, q)``: invariant to orthogonal maps and isotropic scaling."""
    xc, yc = _pair(x, y)
    n, p, q = xc.shape[0], xc.shape[1], yc.shape[1]
    if n < min(p, q):  # the n x n Gram form is cheaper
        kx, ky = xc @ xc.T, yc @ yc.T
        cross, norm_x, norm_y = float(np.sum(kx * ky)), np.linalg.norm(kx), np.linalg.norm(ky)
    else:
        cross = float(np.linalg.norm(yc.T @ xc) ** 2)
        norm_x, norm_y = np.linalg.norm(xc.T @ xc), np.linalg.norm(yc.T @ yc)
    for norm, name in ((norm_x, "x"), (norm_y, "y")):
        if norm == 0.0:
            raise InvalidRequest(FIELD, f"{name} is constant over the examples (zero variance): no similarity")
    return float(np.clip(cross / (norm_x * norm_y), 0.0, 1.0))


SIMILARITY_METHODS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "linear_cka": linear_cka,
    "cca": cca,
    "svcca": svcca,
    "pwcca": pwcca,
}
ALIASES = {"cka": "linear_cka"}


def similarity_function(method: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """The function registered under ``method`` (``linear_cka`` / ``cka``, ``cca``, ``svcca``, ``pwcca``)."""
    name = ALIASES.get(method, method)
    if name not in SIMILARITY_METHODS:
        known = ", ".join(sorted([*SIMILARITY_METHODS, *ALIASES]))
        raise UnknownMethod("similarity_method", f"unknown similarity method {method!r}; known: {known}")
    return SIMILARITY_METHODS[name]


def similarity(x: np.ndarray, y: np.ndarray, method: str = "linear_cka") -> float:
    """``method``'s similarity of ``x`` ``(n, p)`` and ``y`` ``(n, q)``."""
    return similarity_function(method)(x, y)


def layer_similarity(
    activations_by_layer: Sequence[np.ndarray], method: str = "linear_cka", *, keep: float | int = 0.99
) -> np.ndarray:
    """``(n_layers, n_layers)`` matrix: entry ``[i, j]`` = ``method(layer i, layer j)``.

    ``activations_by_layer[i]`` is ``(n_examples, n_neurons_i)`` for the *same* examples (e.g. the
    tokens of one request) at layer ``i``; widths may differ (hidden states vs FFNN activations).
    The diagonal is 1 for ``linear_cka`` / ``cca`` / ``svcca``; ``pwcca`` may be asymmetric.
    ``keep`` is SVCCA's share of variance (or count of directions) per layer. With few examples
    (one request's tokens) the CCA family needs ``n_examples > rank_i + rank_j``: use
    ``linear_cka``, or ``svcca`` with a small integer ``keep``.
    Cost: ``n_layers^2 / 2`` comparisons (``n_layers^2`` for ``pwcca``); linear CKA reuses each
    layer's centred Gram matrix, ``O(n_layers * n^2 * p + n_layers^2 * n^2)``.
    """
    fn = similarity_function(method)
    layers = list(activations_by_layer)
    if not layers:
        raise InvalidRequest(FIELD, "no layers given")
    n_layers = len(layers)
    out = np.empty((n_layers, n_layers), dtype=np.float64)
    if fn is linear_cka:
        grams = []
        n_examples = np.shape(layers[0])[0]
        for i, a in enumerate(layers):
            ac = _centred(a, f"layer {i}")
            if ac.shape[0] != n_examples:
                raise InvalidRequest(FIELD, f"layer {i} has {ac.shape[0]} examples, layer 0 has {n_examples}")
            gram = ac @ ac.T
            norm = np.linalg.norm(gram)
            if norm == 0.0:
                raise InvalidRequest(FIELD, f"layer {i} is constant over the examples (zero variance): no similarity")
            grams.append(gram / norm)
        for i in range(n_layers):
            for j in range(i, n_layers):
                out[i, j] = out[j, i] = np.clip(np.sum(grams[i] * grams[j]), 0.0, 1.0)
        return out
    if fn is svcca:  # reduce each layer once (SVCCA = CCA of the reduced layers)
        layers = [_top_directions(_centred(a, f"layer {i}"), keep, f"layer {i}") for i, a in enumerate(layers)]
        fn = cca
    symmetric = fn is not pwcca
    for i in range(n_layers):
        for j in range(i if symmetric else 0, n_layers):
            out[i, j] = fn(layers[i], layers[j])
            if symmetric:
                out[j, i] = out[i, j]
    return out
