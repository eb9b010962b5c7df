"""``Explainer``: the engine's entry point. Stateless between requests.

``Explainer(model, tokenizer).explain(request)`` generates (or takes a given continuation) and
attributes the generated tokens with every requested method, returning plain typed data.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace

import torch
from torch import nn

from .attribution import AttributionRow, Budget, TargetSet, iter_attribute_tokens, method_cost
from .budget import MemoryModel, plan
from .errors import InvalidRequest, LimitExceeded, section
from .faithfulness import faithfulness_cost, measure_faithfulness, replacement_id
from .generation import generate_ids, iter_generate
from .internals import (
    InternalsLimits,
    inspect_sequence,
    neuron_interventions,
    precheck_params,
    validate_interventions,
)
from .layout import LayoutOverride, ModelLayout, discover_layout
from .methods import get_method
from .tokens import IncrementalPieces, single_token_id, token_pieces
from .types import (
    Attribution,
    AttributionCost,
    ExplainRequest,
    Explanation,
    GenerationResult,
    TargetKind,
    Timing,
)


@dataclass(frozen=True)
class GeneratedToken:
    """A streamed token: ``index`` among the generated tokens, ``position`` in the sequence, its text
    piece and character offsets as in ``Token`` (the piece is "" while a multi-byte character is
    incomplete; the token completing it carries it)."""

    index: int
    position: int
    id: int
    text: str
    start: int
    end: int


StreamEvent = GeneratedToken | AttributionRow | Explanation | GenerationResult


@dataclass(frozen=True)
class EngineLimits:
    """Server-side limits; a request beyond them raises ``LimitExceeded`` naming the limit."""

    max_new_tokens: int = 256
    max_input_tokens: int = 2048  # prompt + continuation
    max_n_steps: int = 1024  # integrated-gradients steps, including the tolerance loop
    max_targets: int = 256  # explained tokens per request
    max_methods: int = 4
    token_budget: int = 1024  # row-tokens per batched forward (a bound besides memory; benchmarks/sharing.py)
    #: bytes one attribution's passes may hold (budget.py); None: 40% of the GPU's memory, or 4 GiB on a CPU
    memory_budget_bytes: int | None = None
    #: the most forward + backward token-rows a request's attribution may take, estimated before any work
    max_cost_token_rows: int = 2_000_000
    internals: InternalsLimits = field(default_factory=InternalsLimits)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> EngineLimits:
        """Limits from a config mapping (e.g. model-config.yaml), ``internals`` nested; unknown names fail."""
        values = dict(values)
        nested: dict[str, object] = dict(values.pop("internals", None) or {})  # type: ignore[call-overload]
        known = {f.name for f in fields(cls)} - {"internals"}
        known_internals = {f.name for f in fields(InternalsLimits)}
        unknown = sorted(set(values) - known) + sorted(f"internals.{k}" for k in set(nested) - known_internals)
        if unknown:
            raise ValueError(
                f"unknown engine limit(s) {unknown}; known: {sorted(known)}, internals.{sorted(known_internals)}"
            )
        return cls(**values, internals=InternalsLimits(**nested))  # type: ignore[arg-type]  # ints from config


class _Timer:
    def __init__(self) -> None:
        self.timings: list[Timing] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings.append(Timing(stage=name, seconds=time.perf_counter() - start))


class Explainer:
    """Generation and attribution for one loaded causal LM (parameters frozen on construction)."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        layout: ModelLayout | None = None,
        override: LayoutOverride | None = None,
        limits: EngineLimits | None = None,
    ) -> None:
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.tokenizer = tokenizer
        self.layout = layout or discover_layout(model, override)
        self.limits = limits or EngineLimits()
        #: what a forward with gradients keeps per row-token on this model and device (measured once)
        self.memory = MemoryModel.calibrate(self.model, self.layout)
        self.budget = Budget(memory_bytes=self._memory_budget(), token_budget=self.limits.token_budget)

    def _memory_budget(self) -> int:
        if self.limits.memory_budget_bytes is not None:
            return self.limits.memory_budget_bytes
        device = self.layout.embedding.weight.device
        if device.type == "cuda":
            return int(0.4 * torch.cuda.get_device_properties(device).total_memory)
        return 4 * 2**30

    @property
    def device(self) -> torch.device:
        return self.layout.embedding.weight.device

    # ---- inputs ---------------------------------------------------------------------------
    def prompt_ids(self, request: ExplainRequest) -> list[int]:
        """Token ids of the prompt: plain text (with the tokenizer's special tokens) or a chat."""
        if request.messages:
            if not getattr(self.tokenizer, "chat_template", None):
                raise InvalidRequest("messages", "this model's tokenizer has no chat template; send 'prompt'")
            text = self.tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in request.messages],
                add_generation_prompt=True,
                tokenize=False,
            )
            ids = self.tokenizer.encode(text, add_special_tokens=False)
        else:
            ids = self.tokenizer.encode(request.prompt)
        if not ids:
            raise InvalidRequest("prompt", "tokenizes to zero tokens")
        return [int(i) for i in ids]

    def _eos_ids(self) -> set[int]:
        eos: set[int] = set()
        config_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (self.tokenizer.eos_token_id, config_eos):
            if isinstance(value, int):
                eos.add(value)
            elif isinstance(value, (list, tuple)):
                eos.update(int(v) for v in value)
        return eos

    def _check_limits(self, request: ExplainRequest, n_prompt: int, n_given: int | None, *, attribute: bool) -> None:
        lim = self.limits
        gen = request.generation
        n_input = n_prompt + (n_given or 0)
        if request.continuation is None and gen.max_new_tokens > lim.max_new_tokens:
            raise LimitExceeded(
                "generation.max_new_tokens", f"must be at most {lim.max_new_tokens}, got {gen.max_new_tokens}"
            )
        if n_input > lim.max_input_tokens:
            raise LimitExceeded("prompt", f"input is {n_input} tokens; the limit is {lim.max_input_tokens}")
        att = request.attribution
        steps = att.max_n_steps if att.completeness_tolerance is not None else att.n_steps
        if steps > lim.max_n_steps:
            field = "max_n_steps" if att.completeness_tolerance is not None else "n_steps"
            raise LimitExceeded(f"attribution.{field}", f"must be at most {lim.max_n_steps}, got {steps}")
        if len(att.methods) > lim.max_methods:
            raise LimitExceeded(
                "attribution.methods", f"at most {lim.max_methods} methods per request, got {len(att.methods)}"
            )
        if not attribute:
            return
        estimate = self.cost_estimate(request, n_prompt, n_given)
        if estimate.token_rows > lim.max_cost_token_rows:
            raise LimitExceeded(
                "attribution",
                f"this request would take up to {estimate.token_rows:,} forward + backward token-rows; the server's"
                f" limit (max_cost_token_rows) is {lim.max_cost_token_rows:,}: explain fewer tokens (positions),"
                " with fewer steps, or a shorter input",
            )

    def cost_estimate(self, request: ExplainRequest, n_prompt: int, n_given: int | None) -> AttributionCost:
        """An upper bound on the token-rows the attribution of ``request`` takes, known before generation:
        ``n_prompt`` prompt tokens, and ``n_given`` continuation tokens or up to ``max_new_tokens``."""
        att = request.attribution
        n_new = n_given if n_given is not None else request.generation.max_new_tokens
        n_targets = min(len(att.positions), n_new) if att.positions is not None else n_new
        steps = att.n_steps
        if att.completeness_tolerance is not None:  # the loop doubles the steps up to max_n_steps
            steps = 2 * att.max_n_steps - att.n_steps
        total = AttributionCost()
        for name in att.methods:
            total = total + method_cost(name, steps, n_prompt + n_new - 1, n_targets)
            if att.faithfulness is not None:
                rows = faithfulness_cost(att.faithfulness, n_prompt + n_new - 1, n_targets)
                total = total + AttributionCost(forward_token_rows=rows)
        return total

    # ---- generation -----------------------------------------------------------------------
    def generate(self, request: ExplainRequest) -> GenerationResult:
        """Generate (or take ``request.continuation``) and return the tokens; no attribution.

        Neuron interventions in ``request.internals`` apply to the generation."""
        self._check_interventions(request)
        with neuron_interventions(self.layout, request.internals.interventions, self.limits.internals):
            return self._generate(request, _Timer())

    def _generate(self, request: ExplainRequest, timer: _Timer, *, attribute: bool = False) -> GenerationResult:
        with timer.stage("tokenize"):
            prompt = self.prompt_ids(request)
            given = (
                self.tokenizer.encode(request.continuation, add_special_tokens=False)
                if request.continuation is not None
                else None
            )
        if given is not None and not given:
            raise InvalidRequest("continuation", "tokenizes to zero tokens")
        self._check_limits(request, len(prompt), len(given) if given is not None else None, attribute=attribute)
        with timer.stage("generation"):
            if given is not None:
                new_ids, reason = [int(i) for i in given], "given"
            else:
                out = generate_ids(self.model, prompt, request.generation, self._eos_ids(), self._decode)
                new_ids, reason = list(out.ids), out.finish_reason
        with timer.stage("detokenize"):
            tokens = token_pieces(self.tokenizer, prompt + new_ids)
        return GenerationResult(
            tokens=tokens, prompt_length=len(prompt), finish_reason=reason, timings=tuple(timer.timings)
        )

    # ---- explanation ----------------------------------------------------------------------
    def targets(self, request: ExplainRequest, generation: GenerationResult) -> TargetSet:
        """The generated tokens to explain (``attribution.positions`` index generated tokens)."""
        n_generated = len(generation.tokens) - generation.prompt_length
        chosen = request.attribution.positions
        indices = sorted(set(chosen)) if chosen is not None else list(range(n_generated))
        bad = [i for i in indices if i >= n_generated]
        if bad:
            raise InvalidRequest(
                "attribution.positions",
                f"index {bad[0]} is out of range: {n_generated} tokens were generated (0..{n_generated - 1})",
            )
        if len(indices) > self.limits.max_targets:
            raise LimitExceeded(
                "attribution.positions", f"at most {self.limits.max_targets} tokens per request, got {len(indices)}"
            )
        positions = tuple(generation.prompt_length + i for i in indices)
        contrast = request.attribution.contrast_token
        contrast_id = (
            single_token_id(self.tokenizer, contrast, "attribution.contrast_token") if contrast is not None else None
        )
        return TargetSet(
            positions=positions,
            token_ids=tuple(generation.tokens[p].id for p in positions),
            contrast_id=contrast_id,
        )

    def explain(self, request: ExplainRequest) -> Explanation:
        """Generate, then attribute the chosen generated tokens with every requested method,
        then look inside the model if ``request.internals`` asks for it."""
        *_, explanation = self._run(request, stream=False)
        assert isinstance(explanation, Explanation)  # _run's contract: its last item
        return explanation

    def stream(self, request: ExplainRequest, *, attribute: bool = True) -> Iterator[StreamEvent]:
        """``explain`` as events: each ``GeneratedToken`` as it is produced, then each
        ``AttributionRow`` as it is computed (method by method), then the ``Explanation``.

        With ``attribute=False`` (a streamed generate): the tokens, then the ``GenerationResult``.
        """
        if not attribute:
            return self._stream_generation(request)
        return self._run(request, stream=True)

    def _stream_generation(self, request: ExplainRequest) -> Iterator[StreamEvent]:
        self._check_interventions(request)
        timer = _Timer()
        with neuron_interventions(self.layout, request.internals.interventions, self.limits.internals):
            generation = yield from self._generate_streaming(request, timer)
        yield generation

    def _generate_streaming(
        self, request: ExplainRequest, timer: _Timer, *, attribute: bool = False
    ) -> Generator[StreamEvent, None, GenerationResult]:
        """Yield ``GeneratedToken`` events; return the ``GenerationResult`` (``yield from`` value)."""
        if request.continuation is not None:
            generation = self._generate(request, timer, attribute=attribute)
            for i, token in enumerate(generation.tokens[generation.prompt_length :]):
                yield GeneratedToken(i, generation.prompt_length + i, token.id, token.text, token.start, token.end)
            return generation
        with timer.stage("tokenize"):
            prompt = self.prompt_ids(request)
        self._check_limits(request, len(prompt), None, attribute=attribute)
        pieces = IncrementalPieces(self.tokenizer)
        tokens = [pieces.push(i) for i in prompt]
        reason = "length"
        with timer.stage("generation"):
            for token_id, finish in iter_generate(
                self.model, prompt, request.generation, self._eos_ids(), self._decode
            ):
                token = pieces.push(token_id, last=finish is not None)
                tokens.append(token)
                index = len(tokens) - 1 - len(prompt)
                yield GeneratedToken(index, len(tokens) - 1, token.id, token.text, token.start, token.end)
                reason = finish or reason
        return GenerationResult(
            tokens=tuple(tokens), prompt_length=len(prompt), finish_reason=reason, timings=tuple(timer.timings)
        )

    def _check_memory(self, request: ExplainRequest, targets: TargetSet) -> None:
        """``LimitExceeded`` naming the memory budget when one row of the attribution would not fit it."""
        if any(get_method(name).needs_gradients for name in request.attribution.methods):
            plan(
                self.memory, 1, max(targets.positions), len(targets.positions),
                budget_bytes=self.budget.memory_bytes, token_budget=self.budget.token_budget,
            )  # fmt: skip

    def _check_interventions(self, request: ExplainRequest) -> None:
        with section("internals"):
            validate_interventions(self.layout, request.internals.interventions, self.limits.internals)

    def _precheck(self, request: ExplainRequest) -> None:
        """Everything that can fail before any model work."""
        with section("attribution"):
            for name in request.attribution.methods:
                get_method(name)
            if request.attribution.faithfulness is not None:
                replacement_id(self.tokenizer, request.attribution.faithfulness)
        if request.internals.needs_forward:
            with section("internals"):
                precheck_params(request.internals, self.layout, self.tokenizer, self.limits.internals)
        self._check_interventions(request)

    def _run(self, request: ExplainRequest, *, stream: bool) -> Iterator[StreamEvent]:
        self._precheck(request)
        timer = _Timer()
        with neuron_interventions(self.layout, request.internals.interventions, self.limits.internals):
            if stream:
                generation = yield from self._generate_streaming(request, timer, attribute=True)
            else:
                generation = self._generate(request, timer, attribute=True)
            input_ids = [t.id for t in generation.tokens]
            attributions: list[Attribution] = []
            if request.attribution.methods and len(generation.tokens) > generation.prompt_length:
                targets = self.targets(request, generation)
                self._check_memory(request, targets)
                for name in request.attribution.methods:
                    with timer.stage(f"attribution:{name}"), section("attribution"):
                        for item in iter_attribute_tokens(
                            self.model, self.layout, self.tokenizer, input_ids, targets,
                            request.attribution, name, memory=self.memory, budget=self.budget,
                        ):  # fmt: skip
                            if isinstance(item, Attribution):
                                attributions.append(item)
                            elif stream:
                                yield item
                    if request.attribution.faithfulness is not None:
                        with timer.stage(f"faithfulness:{name}"), section("attribution"):
                            attributions[-1] = self._with_faithfulness(attributions[-1], input_ids, request)
            internals = None
            if request.internals.needs_forward:
                with timer.stage("internals"), section("internals"):
                    internals = inspect_sequence(
                        self.model, self.layout, self.tokenizer, input_ids, generation.prompt_length,
                        request.internals, self.limits.internals,
                    )  # fmt: skip
        given = len(generation.tokens) - generation.prompt_length if request.continuation is not None else None
        yield Explanation(
            generation=generation,
            attributions=tuple(attributions),
            timings=tuple(timer.timings),
            internals=internals,
            cost_estimate=self.cost_estimate(request, generation.prompt_length, given),
        )

    def _with_faithfulness(
        self, attribution: Attribution, input_ids: list[int], request: ExplainRequest
    ) -> Attribution:
        """``attribution`` with its faithfulness metrics (``request.attribution.faithfulness``)."""
        params = request.attribution.faithfulness
        assert params is not None  # the caller's check
        measured = measure_faithfulness(
            self.model, self.layout, self.tokenizer, input_ids, attribution.target_positions, attribution.scores,
            params, token_budget=self.budget.token_budget, precision=request.attribution.precision,
        )  # fmt: skip
        return replace(attribution, faithfulness=measured)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


__all__ = ["EngineLimits", "Explainer", "GeneratedToken", "StreamEvent", "TargetKind"]
