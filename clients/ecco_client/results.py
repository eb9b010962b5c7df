"""Typed results decoded from the ``ecco.v1`` replies; the same objects for REST and gRPC.

Plain Python (tuples of floats): numpy is optional (``Attribution.scores_array()`` imports it).
Enum values are lower-case proto names: ``"probability"``, ``"l2_normalized"``, ``"gauss_legendre"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from ecco_proto.ecco.v1 import ecco_pb2 as pb
from ecco_proto.fields import enum_name

from .internals import Internals
from .matrices import matrix_rows


def to_json(message: Any) -> dict[str, Any]:
    """The proto3 JSON form of a reply, exactly as the server's REST JSON replies are written."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


@dataclass(frozen=True)
class Token:
    """One token; ``start``/``end`` are offsets (code points) into the decoded sequence."""

    id: int
    text: str
    start: int
    end: int

    @classmethod
    def from_proto(cls, t: pb.Token) -> Token:
        return cls(id=t.id, text=t.text, start=t.start, end=t.end)


@dataclass(frozen=True)
class Timing:
    """Server seconds spent in one stage."""

    stage: str
    seconds: float


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

    @classmethod
    def from_proto(cls, f: pb.Faithfulness) -> Faithfulness:
        return cls(
            perturbation=enum_name(pb.Perturbation.DESCRIPTOR, f.perturbation),
            replacement_token=f.replacement_token if f.HasField("replacement_token") else None,
            replacement_token_id=f.replacement_token_id if f.HasField("replacement_token_id") else None,
            fractions=tuple(f.fractions),
            aopc_steps=f.aopc_steps,
            comprehensiveness=matrix_rows(f.comprehensiveness),
            sufficiency=matrix_rows(f.sufficiency),
            aopc=tuple(f.aopc),
            mean_comprehensiveness=f.mean_comprehensiveness,
            mean_sufficiency=f.mean_sufficiency,
            mean_aopc=f.mean_aopc,
            forward_token_rows=f.forward_token_rows,
        )


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
    #: target "contrastive" only
    contrast_token_id: int | None = None
    #: when the request asked for it (``faithfulness={...}``)
    faithfulness: Faithfulness | None = None

    @classmethod
    def from_proto(cls, a: pb.Attribution) -> Attribution:
        return cls(
            method=a.method,
            target=enum_name(pb.TargetKind.DESCRIPTOR, a.target),
            aggregation=enum_name(pb.Aggregation.DESCRIPTOR, a.aggregation),
            target_positions=tuple(a.target_positions),
            n_sources=a.n_sources,
            scores=matrix_rows(a.scores),
            target_scores=tuple(a.target_scores),
            baseline_scores=tuple(a.baseline_scores),
            convergence_deltas=tuple(a.convergence_deltas),
            n_steps=tuple(a.n_steps),
            baseline=a.baseline if a.HasField("baseline") else None,
            integration=enum_name(pb.Integration.DESCRIPTOR, a.integration),
            contrast_token_id=a.contrast_token_id if a.HasField("contrast_token_id") else None,
            faithfulness=Faithfulness.from_proto(a.faithfulness) if a.HasField("faithfulness") else None,
        )

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

    @staticmethod
    def _common(m: Any) -> dict[str, Any]:
        return {
            "tokens": tuple(Token.from_proto(t) for t in m.tokens),
            "prompt_length": m.prompt_length,
            "generated_text": m.generated_text,
            "finish_reason": m.finish_reason,
            "timings": tuple(Timing(t.stage, t.seconds) for t in m.timings),
            "model": m.model,
            "engine_version": m.engine_version,
            "message": m,
        }

    @classmethod
    def from_proto(cls, m: pb.GenerateResponse) -> GenerateResult:
        return cls(**cls._common(m))


@dataclass(frozen=True)
class ExplainResult(GenerateResult):
    """A generation plus one attribution per requested method (and the model's internals, if asked)."""

    attributions: tuple[Attribution, ...] = ()
    #: what ``internals`` in the request asked for (layer predictions, activations, ...); None if nothing
    internals: Internals | None = None

    @classmethod
    def from_proto(cls, m: pb.ExplainResponse) -> ExplainResult:  # type: ignore[override]
        return cls(
            **cls._common(m),
            attributions=tuple(Attribution.from_proto(a) for a in m.attributions),
            internals=Internals.from_proto(m.internals) if m.HasField("internals") else None,
        )

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


def stream_item(event: pb.StreamEvent) -> StreamItem:
    """The typed item of one ``StreamEvent``."""
    which = event.WhichOneof("event")
    if which == "token":
        t = event.token
        return TokenEvent(index=t.index, position=t.position, token=Token.from_proto(t.token))
    if which == "attribution_row":
        r = event.attribution_row
        rows = matrix_rows(r.scores)
        return RowEvent(
            method=r.method,
            target_position=r.target_position,
            scores=rows[0] if rows else (),
            target_score=r.target_score,
            baseline_score=r.baseline_score if r.HasField("baseline_score") else None,
            convergence_delta=r.convergence_delta if r.HasField("convergence_delta") else None,
            n_steps=r.n_steps if r.HasField("n_steps") else None,
        )
    if which == "generate_summary":
        return GenerateResult.from_proto(event.generate_summary)
    if which == "explain_summary":
        return ExplainResult.from_proto(event.explain_summary)
    raise ValueError("empty StreamEvent")
