"""Readable text tables of results: for each explained token, its top source tokens with weights
(then the model's internals, see ``internals_table``)."""

from __future__ import annotations

import json

from .grouped import grouped_table
from .internals_table import internals_table
from .results import Attribution, Cost, ExplainResult, Faithfulness, GenerateResult, Token
from .text import shown

__all__ = ["explanation_table", "faithfulness_summary", "generation_table", "shown", "top_sources"]


def top_sources(attribution: Attribution, tokens: tuple[Token, ...], row: int, k: int) -> list[tuple[Token, float]]:
    """The ``k`` source tokens with the largest |weight| for explained token number ``row``."""
    scores = attribution.scores[row]
    ranked = sorted(range(len(scores)), key=lambda j: abs(scores[j]), reverse=True)[:k]
    return [(tokens[j], scores[j]) for j in ranked]


def _header(result: GenerateResult) -> list[str]:
    prompt = "".join(t.text for t in result.tokens[: result.prompt_length])
    return [
        f"model {result.model} · engine {result.engine_version} · finish reason: {result.finish_reason}",
        f"prompt:    {json.dumps(prompt, ensure_ascii=False)}",
        f"generated: {json.dumps(result.generated_text, ensure_ascii=False)}",
    ]


def _timings(result: GenerateResult) -> str:
    return "timings: " + " · ".join(f"{t.stage} {t.seconds:.3f}s" for t in result.timings)


def _rows(cost: Cost) -> str:
    return f"{cost.forward_token_rows}+{cost.backward_token_rows}"


def _costs(result: ExplainResult) -> str:
    """Each method's work and the server's estimate, in token-rows (forward + backward)."""
    spent = " · ".join(f"{a.method} {_rows(a.cost)}" for a in result.attributions)
    return f"cost (token-rows, forward+backward): {spent} · estimate {_rows(result.cost_estimate)}"


def generation_table(result: GenerateResult) -> str:
    lines = _header(result)
    lines.append("")
    lines.append(f"  {'pos':>4}  {'id':>6}  {'logprob':>8}  token")
    for i, token in enumerate(result.generated_tokens):
        logprob = f"{token.logprob:>8.4f}" if token.logprob is not None else f"{'':>8}"
        alternatives = " | ".join(f"{shown(a.text, 12)} {a.logprob:.3f}" for a in token.top_tokens)
        line = f"  {result.prompt_length + i:>4}  {token.id:>6}  {logprob}  {shown(token.text, 40)}"
        lines.append(f"{line}   top: {alternatives}" if alternatives else line)
    lines.append(_timings(result))
    return "\n".join(lines)


def _mean(values: tuple[float, ...]) -> float:
    return sum(values) / len(values) if values else float("nan")


def faithfulness_summary(f: Faithfulness) -> str:
    """One line: the perturbation, the averaged metrics and their cost."""
    how = f.perturbation or "deletion"
    if f.replacement_token is not None:
        how += f" by {f.replacement_token}"
    fractions = ", ".join(f"{x:g}" for x in f.fractions)
    return (
        f"  faithfulness ({how}; fractions {fractions}; AOPC over up to {f.aopc_steps} tokens):"
        f" comprehensiveness {f.mean_comprehensiveness:.3g} · sufficiency {f.mean_sufficiency:.3g}"
        f" · AOPC {f.mean_aopc:.3g} · {f.forward_token_rows:,} forward token-rows"
    )


def explanation_table(result: ExplainResult, *, top: int = 5) -> str:
    lines = _header(result)
    for a in result.attributions:
        options = [f"target {a.target}", f"aggregation {a.aggregation}"]
        if a.baseline is not None:
            options.append(f"baseline {a.baseline}")
        if a.n_steps:
            options.append(f"steps {max(a.n_steps)}")
        if a.precision not in (None, "float32"):
            options.append(f"precision {a.precision}")
        if a.n_samples is not None:
            options.append(f"samples {a.n_samples}, seed {a.sampling_seed}")
        lines += ["", f"{a.method} ({', '.join(options)})"]
        has_delta = bool(a.convergence_deltas)
        f = a.faithfulness
        lines.append(
            f"  {'pos':>4}  {'token':<14}  {'target':>9}"
            + (f"  {'IG delta':>9}" if has_delta else "")
            + (f"  {'comp':>6}  {'suff':>6}  {'AOPC':>6}" if f is not None else "")
            + f"  top {top} sources (weight)"
        )
        for row, position in enumerate(a.target_positions):
            sources = " | ".join(
                f"{shown(t.text, 12)} {w:.3g}" for t, w in top_sources(a, result.tokens, row, top) if w != 0
            )
            delta = f"  {a.convergence_deltas[row]:>9.2e}" if has_delta else ""
            if f is not None:
                comp, suff = _mean(f.comprehensiveness[row]), _mean(f.sufficiency[row])
                delta += f"  {comp:>6.3f}  {suff:>6.3f}  {f.aopc[row]:>6.3f}"
            token = shown(result.tokens[position].text)
            lines.append(f"  {position:>4}  {token:<14}  {a.target_scores[row]:>9.4g}{delta}  {sources}")
        if f is not None:
            lines.append(faithfulness_summary(f))
        if result.grouped is not None:
            lines += grouped_table(result.grouped, a.method, top=top)
    if result.attributions:
        lines += ["", _costs(result)]
    if result.internals is not None:
        lines += ["", internals_table(result, top=top)]
    lines += ["", _timings(result)]
    return "\n".join(lines)
