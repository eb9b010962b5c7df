"""Typed requests and results of the engine: plain frozen dataclasses, no transport types.

Shapes are named in the field docs; arrays are numpy ``float32``.
Field-level checks that need no model live in ``__post_init__`` and raise ``InvalidRequest``
naming the field; checks that need the tokenizer or the server's limits live in the explainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum

import numpy as np

from .errors import InvalidRequest
from .faithfulness_types import Faithfulness, FaithfulnessParams
from .grouping import GroupedView, GroupingParams, GroupUnit
from .internals.types import InternalsParams, InternalsResult
from .tokens import Token


class TargetKind(StrEnum):
    """What scalar of the model's output an attribution explains, per generated token."""

    PROBABILITY = "probability"  # softmax probability of the chosen token
    LOG_PROBABILITY = "log_probability"  # its log-softmax
    LOGIT = "logit"  # its raw logit
    CONTRASTIVE = "contrastive"  # log p(chosen) - log p(contrast token)


class Aggregation(StrEnum):
    """How a (n_sources, hidden) attribution is reduced to one score per source token."""

    L2 = "l2"  # L2 norm over the embedding dimension (unsigned)
    SUM = "sum"  # signed sum over the embedding dimension (completeness holds for IG)
    L2_NORMALIZED = "l2_normalized"  # Ecco: L2 norm, then each row divided by its sum


class Integration(StrEnum):
    """Quadrature rule for integrated gradients (Captum's names)."""

    GAUSS_LEGENDRE = "gausslegendre"
    RIEMANN_LEFT = "riemann_left"
    RIEMANN_RIGHT = "riemann_right"
    RIEMANN_MIDDLE = "riemann_middle"
    RIEMANN_TRAPEZOID = "riemann_trapezoid"


class Precision(StrEnum):
    """The dtype attribution's forward and backward passes run in (autocast); attributions, target
    scores and convergence deltas are accumulated in float32 (float64 for a float64 model)."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


#: baselines that name a special token of the tokenizer; "zero" is the all-zero embedding
BASELINE_TOKENS = ("eos", "bos", "pad", "unk", "mask")
BASELINES = ("zero", *BASELINE_TOKENS)
#: the tolerance loop's step ceiling when a request gives no ``max_n_steps``
DEFAULT_MAX_N_STEPS = 512


def _enum(kind: type[Enum], value: object, field_name: str) -> Enum:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)  # type: ignore[attr-defined]
        raise InvalidRequest(field_name, f"must be one of {allowed}, got {value!r}") from None


def _check_range(field_name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidRequest(field_name, f"must be a number in {low}..{high}, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequest(field_name, f"must be in {low}..{high}, got {value!r}")


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a chat, rendered with the tokenizer's chat template."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if not isinstance(self.role, str) or not self.role:
            raise InvalidRequest("messages.role", "must be a non-empty string")
        if not isinstance(self.content, str):
            raise InvalidRequest("messages.content", "must be a string")


@dataclass(frozen=True)
class GenerationParams:
    """How to continue the prompt. Greedy unless ``do_sample``."""

    max_new_tokens: int = 16
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1.0: no nucleus filter
    seed: int | None = None  # same seed, same sampled text
    stop: tuple[str, ...] = ()  # generation ends once the text contains one of these
    #: alternatives returned with each generated (or replayed) token, most likely first (0: none)
    top_n_tokens: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise InvalidRequest("max_new_tokens", f"must be an integer, got {self.max_new_tokens!r}")
        if self.max_new_tokens < 1:
            raise InvalidRequest("max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        _check_range("temperature", self.temperature, 1e-4, 100.0)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidRequest("top_k", f"must be an integer >= 0, got {self.top_k!r}")
        if isinstance(self.top_p, (int, float)) and self.top_p == 0:
            raise InvalidRequest("top_p", "must be in (0, 1], got 0")
        _check_range("top_p", self.top_p, 0.0, 1.0)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise InvalidRequest("seed", f"must be an integer, got {self.seed!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidRequest("stop", "every stop string must be a non-empty string")
        if isinstance(self.top_n_tokens, bool) or not isinstance(self.top_n_tokens, int) or self.top_n_tokens < 0:
            raise InvalidRequest("top_n_tokens", f"must be an integer >= 0, got {self.top_n_tokens!r}")


@dataclass(frozen=True)
class AttributionParams:
    """Which attributions to compute for the generated tokens.

    ``positions`` are indices into the generated tokens (0 = first generated token);
    ``None`` explains every generated token.
    """

    methods: tuple[str, ...] = ("occlusion",)  # () for no attribution
    target: TargetKind = TargetKind.PROBABILITY
    #: for ``target=contrastive``: the alternative token (text of exactly one token, or an id)
    contrast_token: str | int | None = None
    n_steps: int = 64
    integration: Integration = Integration.GAUSS_LEGENDRE
    baseline: str = "eos"
    aggregation: Aggregation = Aggregation.L2_NORMALIZED
    positions: tuple[int, ...] | None = None
    #: IG only: double the steps until every |convergence delta| <= this (target units)
    completeness_tolerance: float | None = None
    #: IG only: the largest step count the tolerance loop may reach; None: ``step_ceiling``'s default
    max_n_steps: int | None = None
    #: dtype of the attribution passes (autocast); float32 is exact to Captum's float32 result
    precision: Precision = Precision.FLOAT32
    #: for ``target=contrastive``: one contrast token per explained token (text or id), in the order of
    #: ``positions`` (else of the generated tokens); instead of ``contrast_token``
    contrast_tokens: tuple[str | int, ...] | None = None
    #: sampled methods (shapley_value_sampling, kernel_shap, gradient_shap): samples to draw; None: each
    #: method's own default
    n_samples: int | None = None
    #: sampled methods: the seed of their random draws (the same seed gives the same attribution)
    sampling_seed: int = 0
    #: gradient_shap: standard deviation of the Gaussian noise added to the input embeddings (embedding units)
    stdevs: float = 0.0
    #: measure each method's faithfulness (comprehensiveness, sufficiency, AOPC); None: do not
    faithfulness: FaithfulnessParams | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", _enum(TargetKind, self.target, "target"))
        object.__setattr__(self, "integration", _enum(Integration, self.integration, "integration"))
        object.__setattr__(self, "aggregation", _enum(Aggregation, self.aggregation, "aggregation"))
        object.__setattr__(self, "precision", _enum(Precision, self.precision, "precision"))
        if len(set(self.methods)) != len(self.methods):
            raise InvalidRequest("methods", f"names a method twice: {list(self.methods)}")
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, int) or self.n_steps < 1:
            raise InvalidRequest("n_steps", f"must be an integer >= 1, got {self.n_steps!r}")
        if self.max_n_steps is not None and (
            isinstance(self.max_n_steps, bool)
            or not isinstance(self.max_n_steps, int)
            or self.max_n_steps < self.n_steps
        ):
            raise InvalidRequest(
                "max_n_steps", f"must be an integer >= n_steps ({self.n_steps}), got {self.max_n_steps!r}"
            )
        if self.baseline not in BASELINES:
            raise InvalidRequest("baseline", f"must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        if self.contrast_token is not None and self.contrast_tokens is not None:
            raise InvalidRequest("contrast_tokens", "give contrast_token (one for all) or contrast_tokens, not both")
        if self.contrast_tokens is not None and not self.contrast_tokens:
            raise InvalidRequest("contrast_tokens", "must not be empty (omit it)")
        contrast_field = "contrast_tokens" if self.contrast_tokens is not None else "contrast_token"
        if self.target is TargetKind.CONTRASTIVE and self.contrast_token is None and self.contrast_tokens is None:
            raise InvalidRequest("contrast_token", "is required when target is 'contrastive'")
        if self.target is not TargetKind.CONTRASTIVE and (self.contrast_token, self.contrast_tokens) != (None, None):
            raise InvalidRequest(contrast_field, "is only meaningful with target 'contrastive'")
        if self.positions is not None:
            if not self.positions:
                raise InvalidRequest("positions", "must not be empty (omit it to explain every token)")
            if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in self.positions):
                raise InvalidRequest("positions", f"must be integers >= 0, got {list(self.positions)}")
        if self.completeness_tolerance is not None:
            _check_range("completeness_tolerance", self.completeness_tolerance, 1e-12, 1e6)
        if self.n_samples is not None and (
            isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) or self.n_samples < 1
        ):
            raise InvalidRequest("n_samples", f"must be an integer >= 1, got {self.n_samples!r}")
        seed = self.sampling_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise InvalidRequest("sampling_seed", f"must be an integer in 0..{2**32 - 1}, got {seed!r}")
        _check_range("stdevs", self.stdevs, 0.0, 1e3)

    @property
    def step_ceiling(self) -> int:
        """The most steps the tolerance loop may reach: ``max_n_steps`` as given, else
        ``DEFAULT_MAX_N_STEPS`` (``n_steps`` when that is larger)."""
        return self.max_n_steps if self.max_n_steps is not None else max(DEFAULT_MAX_N_STEPS, self.n_steps)

    def within(self, server_max_n_steps: int) -> AttributionParams:
        """These parameters with an omitted ``max_n_steps`` set to ``step_ceiling`` capped at the server's
        limit (a given one is checked against the limit instead: ``Explainer``)."""
        if self.max_n_steps is not None:
            return self
        return replace(self, max_n_steps=min(self.step_ceiling, max(server_max_n_steps, self.n_steps)))


@dataclass(frozen=True)
class ExplainRequest:
    """Generate (or take a given continuation) and attribute the generated tokens.

    Exactly one of ``prompt`` and ``messages``. With ``continuation`` nothing is generated:
    the given text is appended to the prompt (teacher forcing) and explained; ``continuation_ids``
    does the same with token ids (an exact replay of a logged response).
    """

    prompt: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    continuation: str | None = None
    continuation_ids: tuple[int, ...] | None = None
    generation: GenerationParams = field(default_factory=GenerationParams)
    attribution: AttributionParams = field(default_factory=AttributionParams)
    #: inside the model: layer predictions, token rankings, FFNN activations, NMF, interventions
    internals: InternalsParams = field(default_factory=InternalsParams)
    #: roll the attributions up to words, character spans or chat turns (``grouping.py``)
    grouping: GroupingParams = field(default_factory=GroupingParams)
    #: seconds of work allowed (> 0); None: the server's ``EngineLimits.deadline_seconds``, which also caps it
    deadline_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.deadline_seconds is not None and not 0 < self.deadline_seconds < math.inf:
            raise InvalidRequest(
                "deadline_seconds", f"must be a positive number of seconds, got {self.deadline_seconds}"
            )
        if (self.prompt is None) == (not self.messages):
            raise InvalidRequest("prompt", "give exactly one of 'prompt' and 'messages'")
        if self.prompt is not None and (not isinstance(self.prompt, str) or not self.prompt):
            raise InvalidRequest("prompt", "must be a non-empty string")
        if self.continuation is not None and (not isinstance(self.continuation, str) or not self.continuation):
            raise InvalidRequest("continuation", "must be a non-empty string when given")
        if self.continuation is not None and self.continuation_ids is not None:
            raise InvalidRequest("continuation_ids", "give continuation (text) or continuation_ids, not both")
        if self.continuation_ids is not None:
            ids = self.continuation_ids
            if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
                raise InvalidRequest("continuation_ids", f"must be a non-empty list of token ids, got {list(ids)}")
        if self.grouping.unit is GroupUnit.TURNS and not self.messages:
            raise InvalidRequest("grouping.unit", "'turns' groups a chat: send 'messages'")

    @property
    def replays(self) -> bool:
        """The continuation is given (text or ids): nothing is generated."""
        return self.continuation is not None or self.continuation_ids is not None


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds spent per stage."""

    stage: str
    seconds: float


@dataclass(frozen=True)
class GenerationResult:
    """The prompt plus generated tokens. ``tokens[:prompt_length]`` is the prompt."""

    tokens: tuple[Token, ...]
    prompt_length: int
    #: "length" (max_new_tokens reached), "eos", "stop" (stop string), "given" (teacher forcing)
    finish_reason: str
    timings: tuple[Timing, ...] = ()
    #: things the client should know, each naming its field first (e.g. ids that do not survive a
    #: decode / encode round trip, so only the ids replay the response exactly)
    warnings: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The whole sequence as text (prompt and generated)."""
        return "".join(t.text for t in self.tokens)

    @property
    def generated_text(self) -> str:
        return "".join(t.text for t in self.tokens[self.prompt_length :])

    @property
    def generated_ids(self) -> list[int]:
        return [t.id for t in self.tokens[self.prompt_length :]]


@dataclass(frozen=True)
class AttributionCost:
    """The work one method's attribution took (or will take), in token-rows: a forward over ``rows``
    sequences of ``n`` tokens is ``rows * n``; a backward batched over ``k`` targets counts ``k`` times."""

    forward_token_rows: int = 0
    backward_token_rows: int = 0

    def __add__(self, other: AttributionCost) -> AttributionCost:
        return AttributionCost(
            self.forward_token_rows + other.forward_token_rows, self.backward_token_rows + other.backward_token_rows
        )

    @property
    def token_rows(self) -> int:
        return self.forward_token_rows + self.backward_token_rows


@dataclass(frozen=True)
class Attribution:
    """One method's attribution of the explained tokens to every earlier token.

    ``scores[i, j]``: contribution of the token at ``source_positions[j]`` to the target at
    ``target_positions[i]``; zero where ``source_positions[j] >= target_positions[i]`` (a causal
    model's prediction cannot depend on its own or later tokens). Shape ``(n_targets, n_sources)``
    with ``source_positions == range(n_sources)`` and ``n_sources == max(target_positions)``.
    """

    method: str
    target: TargetKind
    aggregation: Aggregation
    #: absolute positions (into ``GenerationResult.tokens``) of the explained tokens, (n_targets,)
    target_positions: tuple[int, ...]
    scores: np.ndarray  # (n_targets, n_sources)
    #: the target function at the real input, (n_targets,)
    target_scores: np.ndarray
    #: for ``contrastive`` with one contrast token for all: its id
    contrast_token_id: int | None = None
    #: IG only: baseline used, steps used per target (n_targets,), quadrature rule
    baseline: str | None = None
    n_steps: tuple[int, ...] | None = None
    integration: Integration | None = None
    #: IG only: target function at the baseline, (n_targets,)
    baseline_scores: np.ndarray | None = None
    #: IG only: sum(attributions) - (f(input) - f(baseline)), (n_targets,)
    convergence_deltas: np.ndarray | None = None
    #: sampled methods only: samples drawn per explained token, and the seed of the draws
    n_samples: int | None = None
    sampling_seed: int | None = None
    #: the dtype the passes ran in, and the work they took
    precision: Precision = Precision.FLOAT32
    cost: AttributionCost = field(default_factory=AttributionCost)
    #: for ``contrastive``: the contrast token id of each explained token, (n_targets,)
    contrast_token_ids: tuple[int, ...] | None = None
    #: what ``AttributionParams.faithfulness`` asked for (None when it was not asked)
    faithfulness: Faithfulness | None = None

    @property
    def source_positions(self) -> range:
        return range(self.scores.shape[1])


@dataclass(frozen=True)
class Explanation:
    """What ``Explainer.explain`` returns."""

    generation: GenerationResult
    attributions: tuple[Attribution, ...]
    timings: tuple[Timing, ...] = ()
    #: what ``request.internals`` asked for (None when it asked for nothing)
    internals: InternalsResult | None = None
    #: the attribution's token-rows as estimated before any work (an upper bound; each
    #: ``Attribution.cost`` is what it took)
    cost_estimate: AttributionCost = field(default_factory=AttributionCost)
    #: ``request.grouping``: the attributions rolled up to words, spans or turns (None without it)
    grouped: GroupedView | None = None

    def attribution(self, method: str) -> Attribution:
        for a in self.attributions:
            if a.method == method:
                return a
        raise KeyError(method)
