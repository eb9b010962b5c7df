"""Typed results decoded from the ``ecco.v1`` replies; the same objects for REST and gRPC.

Plain Python (tuples of floats): numpy is optional (``Attribution.scores_array()`` imports it).
Enum values are lower-case proto names: ``"probability"``, ``"l2_normalized"``, ``"gauss_legendre"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from google.protobuf import json_format

from ecco_proto.ecco.v1 import ecco_pb2 as pb

from .grouped import GroupedView
from .internals import Internals
from .messages import from_message


def to_json(message: Any) -> dict[str, Any]:
    """The proto3 JSON form of a reply, exactly as the server's REST JSON replies are written."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@dataclass(frozen=True)
class TokenAlternative:
    """A candidate token at one position and its log-probability."""

    id: int
    text: str
    logprob: float


@dataclass(frozen=True)
class Token:
    """One token; ``start``/``end`` are offsets (code points) into the decoded sequence. Generated or
    replayed tokens carry their ``logprob`` and, if asked (``top_n_tokens``), the ``top_tokens``."""

    id: int
    text: str
    start: int
    end: int
    logprob: float | None = None
    top_tokens: tuple[TokenAlternative, ...] = ()


@dataclass(frozen=True)
class Timing:
    """Server seconds spent in one stage."""

    stage: str
    seconds: float


@dataclass(frozen=True)
class Cost:
    """Work in token-rows: a forward over ``r`` sequences of ``n`` tokens is ``r * n``; a backward
    batched over ``k`` targets counts ``k`` times."""

    forward_token_rows: int = 0
    backward_token_rows: int = 0

    @property
    def token_rows(self) -> int:
        return self.forward_token_rows + self.backward_token_rows


@dataclass(frozen=True)
class Faithfulness:
    """How much the explained tokens' probabilities depend on the sources an attribution ranks first
    (see the proto's ``Faithfulness``): per explained token, ``comprehensiveness[i][f]`` and
    ``sufficiency[i][f]`` for ``fractions[f]``, and ``aopc[i]``; the ``mean_*`` average them."""

    perturbation: str | None  # "deletion" | "replacement"
    replacement_token: str | None
    replacement_token_id: int | None
    fractions: tuple[float, ...]
    aopc_steps: int
    comprehensiveness: tuple[tuple[float, ...], ...]  # (n_targets, n_fractions)
    sufficiency: tuple[tuple[float, ...], ...]  # (n_targets, n_fractions)
    aopc: tuple[float, ...]  # (n_targets,)
    mean_comprehensiveness: float
    mean_sufficiency: float
    mean_aopc: float
    forward_token_rows: int


@dataclass(frozen=True)
class Attribution:
    """One method's attribution: ``scores[i][j]`` is the contribution of token ``j`` to the token at
    ``target_positions[i]`` (zero for ``j >= target_positions[i]``); shape ``(n_targets, n_sources)``."""

    method: str
    target: str | None
    aggregation: str | None
    target_positions: tuple[int, ...]
    n_sources: int
    scores: tuple[tuple[float, ...], ...]
    target_scores: tuple[float, ...]
    #: integrated gradients only (else empty / None)
    baseline_scores: tuple[float, ...] = ()
    convergence_deltas: tuple[float, ...] = ()
    n_steps: tuple[int, ...] = ()
    baseline: str | None = None
    integration: str | None = None
    #: target "contrastive" only: the one contrast token, and each explained token's
    contrast_token_id: int | None = None
    contrast_token_ids: tuple[int, ...] = ()
    #: the dtype the passes ran in ("float32", "bfloat16", "float16"), and the work they took
    precision: str | None = None
    cost: Cost = field(default_factory=Cost)
    #: sampled methods only (shapley_value_sampling, kernel_shap, gradient_shap)
    n_samples: int | None = None
    sampling_seed: int | None = None
    #: when the request asked for it (``faithfulness={...}``)
    faithfulness: Faithfulness | None = None

    @classmethod
    def from_proto(cls, a: pb.Attribution) -> Attribution:
        return from_message(a, cls)

    def row(self, position: int) -> tuple[float, ...]:
        """The scores of the explained token at absolute ``position``."""
        return self.scores[self.target_positions.index(position)]

    def scores_array(self):  # -> numpy.ndarray (numpy is optional)
        """``scores`` as a float32 numpy array of shape ``(n_targets, n_sources)``."""
        import numpy as np

        return np.asarray(self.scores, dtype=np.float32).reshape(len(self.target_positions), self.n_sources)


@dataclass(frozen=True)
class GenerateResult:
    """A generation: ``tokens[:prompt_length]`` is the prompt, the rest was generated (or given)."""

    tokens: tuple[Token, ...]
    prompt_length: int
    generated_text: str
    finish_reason: str
    timings: tuple[Timing, ...]
    model: str
    engine_version: str
    #: things to know, each naming its field first (e.g. ids that only replay exactly as ids)
    warnings: tuple[str, ...] = ()
    #: the reply as received (for ``to_json``); not part of equality
    message: Any = field(default=None, repr=False, compare=False)

    @property
    def generated_tokens(self) -> tuple[Token, ...]:
        return self.tokens[self.prompt_length :]

    @property
    def text(self) -> str:
        """Prompt and generated text."""
        return "".join(t.text for t in self.tokens)

    def to_json(self) -> dict[str, Any]:
        """The proto3 JSON form of the reply (snake_case), the same over REST and gRPC."""
        return to_json(self.message)

    def to_html(self) -> str:
        """A self-contained HTML page of every view of this reply (``ecco_client.views``; works offline)."""
        from .views import render_html

        return render_html(self.to_json())

    def _repr_html_(self) -> str:
        """Jupyter shows the views inline (an HTML fragment with its own script, styles and data)."""
        from .views import render_fragment

        return render_fragment(self.to_json())

    @classmethod
    def from_proto(cls, m: pb.GenerateResponse | pb.ExplainResponse) -> Self:
        """The typed result of a reply (an ``ExplainResult`` takes an ``ExplainResponse``)."""
        return from_message(m, cls)


@dataclass(frozen=True)
class ExplainResult(GenerateResult):
    """A generation plus one attribution per requested method (and the model's internals, if asked)."""

    attributions: tuple[Attribution, ...] = ()
    #: what ``internals`` in the request asked for (layer predictions, activations, ...); None if nothing
    internals: Internals | None = None
    #: the attribution's token-rows as the server estimated them before any work (an upper bound)
    cost_estimate: Cost = field(default_factory=Cost)
    #: the attributions rolled up to words, spans or turns (request ``grouping``); None without it
    grouped: GroupedView | None = None

    def attribution(self, method: str) -> Attribution:
        for a in self.attributions:
            if a.method == method:
                return a
        raise KeyError(f"no attribution for method {method!r}; have {[a.method for a in self.attributions]}")


@dataclass(frozen=True)
class TokenEvent:
    """Streamed: a generated token as soon as it was produced."""

    index: int  # among the generated tokens
    position: int  # in the sequence
    token: Token


@dataclass(frozen=True)
class RowEvent:
    """Streamed: one explained token's attribution row for one method."""

    method: str
    target_position: int
    scores: tuple[float, ...]
    target_score: float
    baseline_score: float | None = None
    convergence_delta: float | None = None
    n_steps: int | None = None


StreamItem = TokenEvent | RowEvent | GenerateResult | ExplainResult


#: the typed item of each ``StreamEvent.event`` (an ``error`` is raised by the transport before)
STREAM_ITEMS: dict[str, type[StreamItem]] = {
    "token": TokenEvent,
    "attribution_row": RowEvent,
    "generate_summary": GenerateResult,
    "explain_summary": ExplainResult,
}


def stream_item(event: pb.StreamEvent) -> StreamItem:
    """The typed item of one ``StreamEvent``."""
    which = event.WhichOneof("event")
    if which not in STREAM_ITEMS:
        raise ValueError("empty StreamEvent")
    return from_message(getattr(event, which), STREAM_ITEMS[which])
