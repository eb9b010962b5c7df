"""Typed request and result of the faithfulness metrics (``faithfulness.py`` computes them).

ERASER's comprehensiveness and sufficiency (DeYoung et al. 2020) and the area over the perturbation
curve (AOPC, Samek et al. 2017), measured for every explained token on the probability the model
gives it, by perturbing its most-attributed source tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from .errors import InvalidRequest

#: special tokens a replacement may name (the same names as ``AttributionParams.baseline``)
REPLACEMENT_TOKENS = ("eos", "bos", "pad", "unk", "mask")
MAX_FRACTIONS = 8
MAX_AOPC_STEPS = 64


class Perturbation(StrEnum):
    """How a source token is taken out of the input."""

    DELETION = "deletion"  # removed from the sequence (later tokens move up one position)
    REPLACEMENT = "replacement"  # its embedding replaced by a named special token's


@dataclass(frozen=True)
class FaithfulnessParams:
    """What to measure. ``fractions``: shares of the explained token's sources (most-attributed first)
    that are perturbed (comprehensiveness) or kept (sufficiency), each in (0, 1]; ``aopc_steps``: the
    perturbation curve removes the 1, 2, ..., ``min(aopc_steps, n_sources)`` most-attributed tokens."""

    fractions: tuple[float, ...] = (0.1, 0.2, 0.5)
    perturbation: Perturbation = Perturbation.DELETION
    #: REPLACEMENT only: the special token put in place of a source ("eos" when not given)
    replacement_token: str | None = None
    aopc_steps: int = 10

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "perturbation", Perturbation(self.perturbation))
        except ValueError:
            allowed = ", ".join(repr(p.value) for p in Perturbation)
            raise InvalidRequest("perturbation", f"must be one of {allowed}, got {self.perturbation!r}") from None
        fractions = tuple(self.fractions)
        object.__setattr__(self, "fractions", fractions)
        if not fractions or len(fractions) > MAX_FRACTIONS:
            raise InvalidRequest("fractions", f"give 1..{MAX_FRACTIONS} fractions, got {len(fractions)}")
        for value in fractions:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise InvalidRequest("fractions", f"every fraction must be in (0, 1], got {value!r}")
        if len(set(fractions)) != len(fractions):
            raise InvalidRequest("fractions", f"names a fraction twice: {list(fractions)}")
        if isinstance(self.aopc_steps, bool) or not isinstance(self.aopc_steps, int):
            raise InvalidRequest("aopc_steps", f"must be an integer, got {self.aopc_steps!r}")
        if not 1 <= self.aopc_steps <= MAX_AOPC_STEPS:
            raise InvalidRequest("aopc_steps", f"must be in 1..{MAX_AOPC_STEPS}, got {self.aopc_steps}")
        if self.perturbation is Perturbation.DELETION and self.replacement_token is not None:
            raise InvalidRequest("replacement_token", "is only meaningful with perturbation 'replacement'")
        if self.replacement_token is not None and self.replacement_token not in REPLACEMENT_TOKENS:
            raise InvalidRequest(
                "replacement_token", f"must be one of {', '.join(REPLACEMENT_TOKENS)}, got {self.replacement_token!r}"
            )

    @property
    def replacement(self) -> str | None:
        """The special token a REPLACEMENT puts in place of a source (None for DELETION)."""
        if self.perturbation is Perturbation.DELETION:
            return None
        return self.replacement_token or "eos"


@dataclass(frozen=True)
class Faithfulness:
    """How much the explained tokens' probabilities depend on the sources an attribution ranks first.

    With ``p(x)`` the probability of the explained token given its full prefix, and ``top_k`` its ``k``
    most-attributed sources (largest score first, ties by position), ``k = ceil(fraction * n_sources)``:

    - ``comprehensiveness[i, f] = p(x) - p(x with top_k perturbed)``: high when the top sources matter;
    - ``sufficiency[i, f] = p(x) - p(x with all but top_k perturbed)``: low when they suffice;
    - ``aopc[i] = sum_{k=0..K} (p(x) - p(x with top_k perturbed)) / (K + 1)``, ``K = min(aopc_steps,
      n_sources)``: the area over the most-relevant-first perturbation curve.

    Under DELETION at least one token stays (``k <= n_sources - 1``) and the prediction is read after
    the last remaining token. Every value is a difference of probabilities, in [-1, 1].
    """

    perturbation: Perturbation
    #: REPLACEMENT only: the special token's name and id
    replacement_token: str | None
    replacement_token_id: int | None
    fractions: tuple[float, ...]
    aopc_steps: int
    comprehensiveness: np.ndarray  # (n_targets, n_fractions)
    sufficiency: np.ndarray  # (n_targets, n_fractions)
    aopc: np.ndarray  # (n_targets,)
    #: ERASER's aggregates: per explained token averaged over the fractions, then over the tokens
    mean_comprehensiveness: float
    mean_sufficiency: float
    mean_aopc: float
    #: the forward passes taken, in token-rows (padded rows counted in full)
    forward_token_rows: int
