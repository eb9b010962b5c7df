"""CCA / SVCCA / PWCCA / linear CKA against answers known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from ecco_engine import InvalidRequest, UnknownMethod
from ecco_engine.analysis import (
    canonical_correlations,
    cca,
    layer_similarity,
    linear_cka,
    pwcca,
    similarity,
    svcca,
)

ALL = (cca, svcca, pwcca, linear_cka)
TIGHT = 1e-9  # float64 linear algebra on well-conditioned 200 x 20 matrices


def gaussian(seed: int, n: int = 200, p: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, p))


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_a_representation_with_itself_is_1(fn):
    x = gaussian(0) * np.linspace(0.1, 10, 20) + 3.0  # unequal scales and an offset: centring matters
    assert fn(x, x) == pytest.approx(1.0, abs=TIGHT)


def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling_but_not_to_anisotropic_scaling():
    x = gaussian(1) @ np.diag(np.linspace(1, 5, 20))
    y = np.tanh(x @ gaussian(2, 20, 15))  # a non-linear, lower-dimensional function of x
    q = ortho_group.rvs(15, random_state=3)
    base = linear_cka(x, y)
    assert 0.2 < base < 0.99
    assert linear_cka(x, 7.5 * y @ q) == pytest.approx(base, abs=TIGHT)
    assert linear_cka(-0.01 * x @ ortho_group.rvs(20, random_state=4), y) == pytest.approx(base, abs=TIGHT)
    stretch = np.diag(np.r_[100.0, np.ones(14)])
    assert abs(linear_cka(x, y @ stretch) - base) > 1e-3  # CKA is *not* invariant to invertible maps


def test_cca_family_is_invariant_to_invertible_linear_maps():
    x = gaussian(5)
    y = np.tanh(x[:, :12] @ gaussian(6, 12, 12)) + 0.3 * gaussian(7, 200, 12)
    a = gaussian(8, 12, 12) + 3 * np.eye(12)  # invertible, far from orthogonal
    assert abs(np.linalg.det(a)) > 1e-3
    for fn in (cca, svcca):
        base = fn(x, y) if fn is cca else fn(x, y, keep=1.0)
        moved = fn(x, y @ a + 5.0) if fn is cca else fn(x, y @ a + 5.0, keep=1.0)
        assert moved == pytest.approx(base, abs=1e-8)
    np.testing.assert_allclose(
        canonical_correlations(x @ gaussian(9, 20, 20), y @ a), canonical_correlations(x, y), atol=1e-8
    )


def test_svcca_with_every_direction_equals_cca():
    x, y = gaussian(10), gaussian(11, 200, 30)[:, :25] @ gaussian(12, 25, 25)
    assert svcca(x, y, keep=1.0) == pytest.approx(cca(x, y), abs=TIGHT)
    assert svcca(x, y, keep=25) == pytest.approx(cca(x, y), abs=TIGHT)  # 25 >= both ranks: all of them


def test_svcca_keeps_the_high_variance_signal_and_drops_the_noise():
    """y = shared 3-D signal (large) + 27 small independent neurons: SVCCA at 0.9 sees only the signal."""
    rng = np.random.default_rng(13)
    signal = rng.standard_normal((500, 3)) * 10
    x = np.hstack([signal, 0.1 * rng.standard_normal((500, 27))])  # signal: > 99.9% of the variance
    y = np.hstack([signal @ ortho_group.rvs(3, random_state=0), 0.1 * rng.standard_normal((500, 27))])
    assert svcca(x, y, keep=0.99) == pytest.approx(1.0, abs=1e-3)
    assert cca(x, y) < 0.3  # 27 of 30 correlations are between independent noise neurons


def test_independent_representations_match_the_analytical_expectation():
    """For independent Gaussian x (n, p), y (n, q), p <= q:

    * E[sum of squared canonical correlations] = p q / (n - 1) exactly (x fixed, y's span is a
      uniformly random q-dim subspace of the n - 1 centred dimensions), so E[mean rho^2] = q / (n - 1);
    * linear CKA ~ sqrt(p q / ((n + p) (n + q))) (ratio of the Wishart expectations).
    Averaged over 40 draws; tolerances are ~4 standard errors of the mean (measured).
    """
    n, p, q = 400, 10, 30
    rhos2, ckas = [], []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        x, y = rng.standard_normal((n, p)), rng.standard_normal((n, q))
        rhos2.append(np.mean(canonical_correlations(x, y) ** 2))
        ckas.append(linear_cka(x, y))
    assert np.mean(rhos2) == pytest.approx(q / (n - 1), rel=0.05)
    assert np.mean(ckas) == pytest.approx(np.sqrt(p * q / ((n + p) * (n + q))), rel=0.1)
    assert cca(x, y) < 0.3 and pwcca(x, y) < 0.3


def test_pwcca_weights_the_directions_that_carry_the_neurons():
    """x: 2 strong neurons shared with y + 8 weak independent ones; PWCCA >> mean CCA.

    The 2 shared canonical variates carry ~1000x more of x's neurons than the 8 noise variates,
    so PWCCA ~ 1 while the mean CCA ~ (2 * 1 + 8 * small) / 10.
    """
    rng = np.random.default_rng(14)
    shared = rng.standard_normal((400, 2))
    x = np.hstack([100 * shared, 0.1 * rng.standard_normal((400, 8))])
    y = np.hstack([shared @ rng.standard_normal((2, 2)), rng.standard_normal((400, 18))])
    assert pwcca(x, y) > 0.95
    assert cca(x, y) < 0.4


def test_rank_deficiency_is_removed_and_too_few_examples_is_a_clear_error():
    x = gaussian(15, 100, 10)
    padded = np.hstack([x, x[:, :3] * 2.0, np.full((100, 4), 7.0)])  # duplicated and constant neurons
    y = gaussian(16, 100, 8)
    assert cca(padded, y) == pytest.approx(cca(x, y), abs=TIGHT)
    assert pwcca(padded, padded) == pytest.approx(1.0, abs=TIGHT)
    wide = gaussian(17, 30, 50)  # more neurons than examples
    with pytest.raises(InvalidRequest, match="needs more examples than rank"):
        cca(wide, gaussian(18, 30, 5))
    with pytest.raises(InvalidRequest, match="needs more examples than rank"):
        pwcca(gaussian(19, 30, 16), gaussian(20, 30, 16))  # 16 + 16 > 30
    assert 0.0 <= linear_cka(wide, gaussian(18, 30, 5)) <= 1.0  # CKA has no such limit
    assert svcca(wide, gaussian(18, 30, 5), keep=5) <= 1.0  # nor SVCCA with few enough directions


def test_bad_input_is_invalid_request_naming_the_problem():
    x = gaussian(21)
    with pytest.raises(InvalidRequest, match="same examples"):
        linear_cka(x, x[:-1])
    with pytest.raises(InvalidRequest, match="constant"):
        linear_cka(x, np.ones((200, 3)))
    with pytest.raises(InvalidRequest, match="NaN"):
        cca(x, np.full((200, 2), np.nan))
    with pytest.raises(InvalidRequest, match="2-D"):
        cca(x[:, 0], x)
    with pytest.raises(InvalidRequest, match="svcca_keep"):
        svcca(x, x, keep=1.5)
    with pytest.raises(UnknownMethod, match="known: cca, cka, linear_cka, pwcca, svcca"):
        similarity(x, x, "rsa")


def test_layer_similarity_matches_pairwise_calls():
    rng = np.random.default_rng(22)
    base = rng.standard_normal((60, 8))
    layers = [
        base @ rng.standard_normal((8, w)) + 0.5 * k * rng.standard_normal((60, w))
        for k, w in enumerate((8, 24, 16, 24))
    ]
    for method, fn in (("linear_cka", linear_cka), ("cca", cca), ("svcca", svcca), ("pwcca", pwcca)):
        matrix = layer_similarity(layers if method == "linear_cka" else [a[:, :8] for a in layers], method)
        inputs = layers if method == "linear_cka" else [a[:, :8] for a in layers]
        assert matrix.shape == (4, 4)
        for i in range(4):
            for j in range(4):
                assert matrix[i, j] == pytest.approx(fn(inputs[i], inputs[j]), abs=1e-9)
        if method != "pwcca":
            np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
            np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-9)
    # more neurons (24) than examples allow for CCA with 60 tokens is fine for CKA only
    few_tokens = [rng.standard_normal((20, 16)) for _ in range(3)]
    with pytest.raises(InvalidRequest, match="needs more examples"):
        layer_similarity(few_tokens, "cca")
    reduced = layer_similarity(few_tokens, "svcca", keep=4)  # 4 + 4 directions < 20 tokens
    assert reduced[0, 1] == pytest.approx(svcca(few_tokens[0], few_tokens[1], keep=4), abs=1e-12)
