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
from .deadline import Deadline
from .errors import InvalidRequest, LimitExceeded, section
from .faithfulness import faithfulness_cost, measure_faithfulness, replacement_id
from .generation import generate_ids, iter_generate
from .input_size import check_input_size
from .internals import (
    InternalsLimits,
    inspect_sequence,
    neuron_interventions,
    precheck_params,
    validate_interventions,
)
from .layout import LayoutOverride, ModelLayout, discover_layout
from .methods import get_method
from .replay import check_ids, roundtrip_warning, teacher_forced_choices, with_choice, with_choices
from .selection import grouped_view, request_groups, select_targets
from .tokens import IncrementalPieces, Token, TokenAlternative, token_pieces
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
    logprob: float | None = None
    top_tokens: tuple[TokenAlternative, ...] = ()

    @classmethod
    def of(cls, index: int, position: int, token: Token) -> GeneratedToken:
        return cls(index, position, token.id, token.text, token.start, token.end, token.logprob, token.top_tokens)


StreamEvent = GeneratedToken | AttributionRow | Explanation | GenerationResult


@dataclass(frozen=True)
class EngineLimits:
    """Server-side limits; a request beyond them raises ``LimitExceeded`` naming the limit."""

    max_new_tokens: int = 256
    max_input_tokens: int = 2048  # prompt + continuation
    max_n_steps: int = 1024  # integrated-gradients steps, including the tolerance loop
    max_targets: int = 256  # explained tokens per request
    max_methods: int = 4
    max_top_n_tokens: int = 20  # alternatives per generated token (generation.top_n_tokens)
    token_budget: int = 1024  # row-tokens per batched forward (a bound besides memory; benchmarks/sharing.py)
    #: bytes one attribution's passes may hold (budget.py); None: 40% of the GPU's memory, or 4 GiB on a CPU
    memory_budget_bytes: int | None = None
    #: the most forward + backward token-rows a request's attribution may take, estimated before any work
    max_cost_token_rows: int = 2_000_000
    #: seconds of work per request (deadline.py): the default and the cap of ``deadline_seconds``; None: none.
    #: Well below TorchServe's ``responseTimeout`` (600 s), whose expiry restarts the worker instead.
    deadline_seconds: float | None = 240.0
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

    @contextmanager
    def _device_memory(self) -> Iterator[None]:
        """A device out-of-memory error becomes ``LimitExceeded`` naming the memory budget; the memory the
        failed request held is released, so the next request runs as if it had not happened."""
        try:
            yield
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise LimitExceeded(
                "request",
                f"the device ({self.device}) ran out of memory serving this request; the attribution's memory"
                f" budget (memory_budget_bytes) is {self.budget.memory_bytes / 2**20:.0f} MiB: explain fewer tokens"
                " (positions), with fewer steps, or a shorter input",
            ) from None

    # ---- inputs ---------------------------------------------------------------------------
    def prompt_ids(self, request: ExplainRequest) -> list[int]:
        """Token ids of the prompt: plain text (with the tokenizer's special tokens) or a chat.

        Refuses an input (prompt + continuation) too long to fit ``max_input_tokens`` before tokenizing."""
        check_input_size(request, self.limits.max_input_tokens)
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
        if gen.top_n_tokens > lim.max_top_n_tokens:
            raise LimitExceeded(
                "generation.top_n_tokens", f"must be at most {lim.max_top_n_tokens}, got {gen.top_n_tokens}"
            )
        if not request.replays and gen.max_new_tokens > lim.max_new_tokens:
            raise LimitExceeded(
                "generation.max_new_tokens", f"must be at most {lim.max_new_tokens}, got {gen.max_new_tokens}"
            )
        if n_input > lim.max_input_tokens:
            raise LimitExceeded("prompt", f"input is {n_input} tokens; the limit is {lim.max_input_tokens}")
        att = request.attribution  # each step count as the client gave it, named as given
        for name, steps in (("n_steps", att.n_steps), ("max_n_steps", att.max_n_steps)):
            if steps is not None and steps > lim.max_n_steps:
                raise LimitExceeded(
                    f"attribution.{name}", f"must be at most {lim.max_n_steps} (the server's limit), got {steps}"
                )
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
            steps = 2 * att.within(self.limits.max_n_steps).step_ceiling - att.n_steps
        indices = sorted(set(att.positions))[:n_targets] if att.positions is not None else range(n_new)
        positions = [n_prompt + min(i, n_new - 1) for i in indices]
        total = AttributionCost()
        for name in att.methods:
            total = total + method_cost(name, att, steps, positions, self.budget.token_budget)
            if att.faithfulness is not None:
                rows = faithfulness_cost(att.faithfulness, n_prompt + n_new - 1, n_targets)
                total = total + AttributionCost(forward_token_rows=rows)
        return total

    # ---- generation -----------------------------------------------------------------------
    def generate(self, request: ExplainRequest) -> GenerationResult:
        """Generate (or take ``request.continuation``) and return the tokens; no attribution.

        Neuron interventions in ``request.internals`` apply to the generation."""
        self._check_interventions(request)
        deadline = self._deadline(request)
        with (
            self._device_memory(),
            neuron_interventions(self.layout, request.internals.interventions, self.limits.internals),
        ):
            return self._generate(request, _Timer(), deadline)

    def _deadline(self, request: ExplainRequest) -> Deadline:
        """The request's deadline from now: its ``deadline_seconds`` capped by the server's."""
        return Deadline.capped(request.deadline_seconds, self.limits.deadline_seconds)

    def _given_ids(self, request: ExplainRequest) -> list[int] | None:
        """The continuation's ids (teacher forcing), or None to generate."""
        if request.continuation_ids is not None:
            return check_ids(self.tokenizer, request.continuation_ids, "continuation_ids")
        if request.continuation is None:
            return None
        given = [int(i) for i in self.tokenizer.encode(request.continuation, add_special_tokens=False)]
        if not given:
            raise InvalidRequest("continuation", "tokenizes to zero tokens")
        return given

    def _warnings(self, request: ExplainRequest, new_ids: list[int]) -> tuple[str, ...]:
        field = "continuation_ids" if request.continuation_ids is not None else "generated_text"
        warning = (
            roundtrip_warning(self.tokenizer, new_ids, field) if new_ids and request.continuation is None else None
        )
        return (warning,) if warning else ()

    def _generate(
        self, request: ExplainRequest, timer: _Timer, deadline: Deadline, *, attribute: bool = False
    ) -> GenerationResult:
        with timer.stage("tokenize"):
            prompt = self.prompt_ids(request)
            given = self._given_ids(request)
        self._check_limits(request, len(prompt), len(given) if given is not None else None, attribute=attribute)
        top_n = request.generation.top_n_tokens
        with timer.stage("generation"):
            if given is not None:
                new_ids, reason = given, "given"
                choices = teacher_forced_choices(self.model, prompt + new_ids, len(prompt), top_n)
            else:
                out = generate_ids(self.model, prompt, request.generation, self._eos_ids(), self._decode, deadline)
                new_ids, reason, choices = list(out.ids), out.finish_reason, out.choices
        with timer.stage("detokenize"):
            tokens = with_choices(self.tokenizer, token_pieces(self.tokenizer, prompt + new_ids), len(prompt), choices)
        return GenerationResult(
            tokens=tokens,
            prompt_length=len(prompt),
            finish_reason=reason,
            timings=tuple(timer.timings),
            warnings=self._warnings(request, new_ids),
        )

    # ---- explanation ----------------------------------------------------------------------
    def targets(self, request: ExplainRequest, generation: GenerationResult) -> TargetSet:
        """The generated tokens to explain (``attribution.positions`` index generated tokens)."""
        return select_targets(self.tokenizer, request, generation, self.limits.max_targets)

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
        timer, deadline = _Timer(), self._deadline(request)
        with (
            self._device_memory(),
            neuron_interventions(self.layout, request.internals.interventions, self.limits.internals),
        ):
            generation = yield from self._generate_streaming(request, timer, deadline)
        yield generation

    def _generate_streaming(
        self, request: ExplainRequest, timer: _Timer, deadline: Deadline, *, attribute: bool = False
    ) -> Generator[StreamEvent, None, GenerationResult]:
        """Yield ``GeneratedToken`` events; return the ``GenerationResult`` (``yield from`` value)."""
        if request.replays:
            generation = self._generate(request, timer, deadline, attribute=attribute)
            for i, token in enumerate(generation.tokens[generation.prompt_length :]):
                yield GeneratedToken.of(i, generation.prompt_length + i, token)
            return generation
        with timer.stage("tokenize"):
            prompt = self.prompt_ids(request)
        self._check_limits(request, len(prompt), None, attribute=attribute)
        pieces = IncrementalPieces(self.tokenizer)
        tokens = [pieces.push(i) for i in prompt]
        reason = "length"
        with timer.stage("generation"):
            for step in iter_generate(self.model, prompt, request.generation, self._eos_ids(), self._decode, deadline):
                token = pieces.push(step.token_id, last=step.finish_reason is not None)
                tokens.append(with_choice(self.tokenizer, token, step.choice))
                yield GeneratedToken.of(len(tokens) - 1 - len(prompt), len(tokens) - 1, tokens[-1])
                reason = step.finish_reason or reason
        return GenerationResult(
            tokens=tuple(tokens),
            prompt_length=len(prompt),
            finish_reason=reason,
            timings=tuple(timer.timings),
            warnings=self._warnings(request, [t.id for t in tokens[len(prompt) :]]),
        )

    def _check_memory(self, request: ExplainRequest, targets: TargetSet) -> None:
        """``LimitExceeded`` naming the memory budget when one row of the attribution would not fit it."""
        if any(get_method(name).needs_gradients for name in request.attribution.methods):
            plan(
                self.memory, 1, sorted(targets.positions), budget_bytes=self.budget.memory_bytes,
                token_budget=self.budget.token_budget,
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
        with self._device_memory():
            yield from self._run_on_device(request, stream=stream)

    def _run_on_device(self, request: ExplainRequest, *, stream: bool) -> Iterator[StreamEvent]:
        self._precheck(request)
        timer, deadline = _Timer(), self._deadline(request)
        with neuron_interventions(self.layout, request.internals.interventions, self.limits.internals):
            if stream:
                generation = yield from self._generate_streaming(request, timer, deadline, attribute=True)
            else:
                generation = self._generate(request, timer, deadline, attribute=True)
            input_ids = [t.id for t in generation.tokens]
            groups = request_groups(self.tokenizer, request, generation)
            attributions: list[Attribution] = []
            if request.attribution.methods and len(generation.tokens) > generation.prompt_length:
                targets = self.targets(request, generation)
                self._check_memory(request, targets)
                attribution = request.attribution.within(self.limits.max_n_steps)
                for name in request.attribution.methods:
                    with timer.stage(f"attribution:{name}"), section("attribution"):
                        for item in iter_attribute_tokens(
                            self.model, self.layout, self.tokenizer, input_ids, targets,
                            attribution, name, memory=self.memory, budget=self.budget, deadline=deadline,
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
                deadline.check("internals")
                with timer.stage("internals"), section("internals"):
                    internals = inspect_sequence(
                        self.model, self.layout, self.tokenizer, input_ids, generation.prompt_length,
                        request.internals, self.limits.internals,
                    )  # fmt: skip
        given = len(generation.tokens) - generation.prompt_length if request.replays else None
        yield Explanation(
            generation=generation,
            attributions=tuple(attributions),
            timings=tuple(timer.timings),
            internals=internals,
            cost_estimate=self.cost_estimate(request, generation.prompt_length, given),
            grouped=grouped_view(request, groups, attributions),
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
