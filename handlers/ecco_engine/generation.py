"""Text generation with the KV cache and no autograd: greedy or sampled, with stop strings; every
generated token comes with its log-probability (and, on request, the top alternatives)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .deadline import NEVER, Deadline
from .types import GenerationParams


@dataclass(frozen=True)
class Choice:
    """The model's log-probability (natural log, softmax of the raw logits: before temperature, top-k
    and top-p) of the token at one position, and the ``top_n`` most likely ids with theirs."""

    logprob: float
    top_ids: tuple[int, ...] = ()
    top_logprobs: tuple[float, ...] = ()


def choice(logits: torch.Tensor, token_id: int, top_n: int) -> Choice:
    """The ``Choice`` of ``token_id`` from one position's logits ``(vocab,)``."""
    log_probs = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    if top_n <= 0:
        return Choice(float(log_probs[token_id]))
    top = torch.topk(log_probs, min(top_n, log_probs.shape[-1]))
    return Choice(float(log_probs[token_id]), tuple(top.indices.tolist()), tuple(top.values.tolist()))


@dataclass(frozen=True)
class Step:
    """One generated token: its id, the reason generation finished (None until the last) and its ``Choice``."""

    token_id: int
    finish_reason: str | None
    choice: Choice


@dataclass(frozen=True)
class GeneratedIds:
    """Token ids produced by ``generate_ids``. ``finish_reason``: "length", "eos" or "stop"."""

    ids: tuple[int, ...]
    finish_reason: str
    choices: tuple[Choice, ...] = ()  # (n_generated,)


def cache_kwarg(model: torch.nn.Module) -> str:
    """transformers 5 calls the KV cache argument ``cache``; older releases ``past_key_values``."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def filter_logits(logits: torch.Tensor, params: GenerationParams) -> torch.Tensor:
    """Apply temperature, top-k and top-p to one row of logits ``(vocab,)``."""
    logits = logits / params.temperature
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # drop a token once the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= params.top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def iter_generate(
    model: torch.nn.Module,
    prompt_ids: list[int],
    params: GenerationParams,
    eos_ids: set[int],
    decode: Callable[[list[int]], str],
    deadline: Deadline = NEVER,
) -> Iterator[Step]:
    """Yield a ``Step`` for each new token (``params.top_n_tokens`` alternatives with it).

    One forward over the prompt, then one forward per token on the KV cache, under
    ``torch.inference_mode``. Sampling draws from a private ``torch.Generator`` seeded by
    ``params.seed`` so the same seed gives the same text regardless of other requests.
    ``deadline`` is checked before every forward (``DeadlineExceeded``).
    """
    generator = None
    if params.do_sample:
        generator = torch.Generator(device="cpu")
        generator.manual_seed(params.seed if params.seed is not None else torch.seed())
    device = next(model.parameters()).device
    cache_name = cache_kwarg(model)
    new_ids: list[int] = []
    with torch.inference_mode():
        inputs = torch.tensor([prompt_ids], device=device)
        cache = None
        for step in range(params.max_new_tokens):
            deadline.check("generation")
            kwargs: dict[str, object] = {cache_name: cache} if cache is not None else {}
            output = model(input_ids=inputs, use_cache=True, logits_to_keep=1, **kwargs)
            cache = output_cache(output)
            logits = output.logits[0, -1].float()
            if params.do_sample:
                probs = torch.softmax(filter_logits(logits, params), dim=-1).cpu()
                token_id = int(torch.multinomial(probs, 1, generator=generator))
            else:
                token_id = int(torch.argmax(logits))
            new_ids.append(token_id)
            reason = None
            if token_id in eos_ids:
                reason = "eos"
            elif params.stop and any(s in decode(new_ids) for s in params.stop):
                reason = "stop"
            elif step + 1 == params.max_new_tokens:
                reason = "length"
            yield Step(token_id, reason, choice(logits, token_id, params.top_n_tokens))
            if reason is not None:
                return
            inputs = torch.tensor([[token_id]], device=device)


def generate_ids(
    model: torch.nn.Module,
    prompt_ids: list[int],
    params: GenerationParams,
    eos_ids: set[int],
    decode: Callable[[list[int]], str],
    deadline: Deadline = NEVER,
) -> GeneratedIds:
    """All of ``iter_generate`` at once."""
    steps = list(iter_generate(model, prompt_ids, params, eos_ids, decode, deadline))
    reason = next((s.finish_reason for s in reversed(steps) if s.finish_reason), "length")
    return GeneratedIds(
        ids=tuple(s.token_id for s in steps), finish_reason=reason, choices=tuple(s.choice for s in steps)
    )
