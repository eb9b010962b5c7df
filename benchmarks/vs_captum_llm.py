"""The engine against Captum's own LLM attribution API, doing the same work in the same run.

Work: the default model, a 10-token prompt, 16 greedily generated tokens; attribute every
generated token to every earlier token (prompt and earlier generated tokens) with integrated
gradients (32 Gauss-Legendre steps) and gradient x input, target = log-probability of the token,
signed sum over the embedding dimension.

Captum side: ``LLMGradientAttribution`` over ``LayerIntegratedGradients(model, embeddings)`` /
``LayerGradientXActivation(model, embeddings)`` with a ``TextTokenInput``. That wrapper attributes
to its prompt only and holds earlier generated tokens fixed, so the same work is one call per
generated token, with the whole prefix (prompt + earlier generated tokens) as its prompt and the
single next token as its target. Its baseline is a token id (default 0); both sides use the same
token (``--baseline``, default eos). The Captum wrapper's target is the log-softmax of the last
position's logits at the target id (``GradientForwardFunc`` in captum/attr/_core/llm_attr.py); it
keeps every token (no BOS / special-token skipping unless ``skip_tokens`` is given, and this
tokenizer adds no BOS), so Captum's row k has one score per prefix token and matches the
engine's row k over source positions ``0 .. P+k-1``.

Each side runs ``--rounds`` times in alternating order; the minimum time is reported, as wall
seconds and as process CPU seconds (all threads). On a shared, busy machine wall time swings by
several times between identical runs; with ``--threads 1`` CPU time is the steadier measure of
the work done. Read the ratios, not the absolute seconds. The engine side runs what
``Explainer.explain`` runs (generate, then ``attribute_tokens`` per method), timed per method.

Run from the repository root: ``python benchmarks/vs_captum_llm.py [--json]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import _common  # noqa: F401  (sets sys.path before the engine is imported)
import numpy as np
import torch
from _common import base_parser, environment, json_text, load, table
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

from ecco_engine.attribution import attribute_tokens
from ecco_engine.explainer import Explainer
from ecco_engine.types import Attribution, AttributionParams, ExplainRequest, GenerationParams, GenerationResult

PROMPT = "The printing press was invented in Germany around the year"  # 10 tokens for SmolLM2
METHODS = ("integrated_gradients", "grad_x_input")


@dataclass
class Run:
    """One side's run: wall and CPU seconds of generation and of each method."""

    generate_seconds: float
    generate_cpu_seconds: float
    seconds: dict[str, float]
    cpu_seconds: dict[str, float]


@dataclass
class CaptumRun(Run):
    matrices: dict[str, list[np.ndarray]]  # per generated token k: (P + k,)
    generated_ids: list[int]
    retokenized: int  # prefixes whose decoded text re-tokenizes differently (ids were set directly)


def token_input(tokenizer, ids: list[int], baseline_id: int) -> tuple[TextTokenInput, bool]:
    """Captum's text input for the prefix ``ids``; if the decoded text re-tokenizes differently,
    the ids are set directly (same object, same behaviour) so both sides see the same tokens."""
    inp = TextTokenInput(tokenizer.decode(ids), tokenizer, baselines=baseline_id)
    if inp.inp_tensor[0].tolist() == ids:
        return inp, False
    tensor = torch.tensor([ids])
    inp.inp_tensor = tensor
    inp.itp_tensor = tensor
    inp.values = tokenizer.convert_ids_to_tokens(ids)
    inp.n_itp_features = len(ids)
    return inp, True


class Clock:
    """Wall (``perf_counter``) and process CPU (``process_time``, all threads) seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_captum(model, tokenizer, prompt_ids: list[int], n_new: int, baseline_id: int, n_steps: int) -> CaptumRun:
    embeddings = model.get_input_embeddings()
    wrappers = {
        "integrated_gradients": (LLMGradientAttribution(LayerIntegratedGradients(model, embeddings), tokenizer),
                                 {"n_steps": n_steps, "method": "gausslegendre"}),
        "grad_x_input": (LLMGradientAttribution(LayerGradientXActivation(model, embeddings), tokenizer), {}),
    }  # fmt: skip
    with Clock() as gen_clock, torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=n_new,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    ids = out[0].tolist()
    generated = ids[len(prompt_ids) :]
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    matrices: dict[str, list[np.ndarray]] = {}
    retokenized = 0
    for name, (wrapper, kwargs) in wrappers.items():
        rows = []
        with Clock() as clock:
            for k in range(len(generated)):
                inp, changed = token_input(tokenizer, ids[: len(prompt_ids) + k], baseline_id)
                retokenized += changed
                result = wrapper.attribute(inp, target=torch.tensor([generated[k]]), **kwargs)
                rows.append(result.token_attr[0].detach().double().numpy())
        seconds[name], cpu_seconds[name] = clock.wall, clock.cpu
        matrices[name] = rows
    return CaptumRun(
        gen_clock.wall, gen_clock.cpu, seconds, cpu_seconds, matrices, generated, retokenized // len(wrappers)
    )


@dataclass
class EngineRun(Run):
    generation: GenerationResult
    attributions: dict[str, Attribution]


def run_engine(explainer: Explainer, request: ExplainRequest) -> EngineRun:
    """What ``Explainer.explain`` does (generate, then ``attribute_tokens`` per method), timed per stage."""
    with Clock() as gen_clock:
        generation = explainer.generate(request)
    targets = explainer.targets(request, generation)
    input_ids = [t.id for t in generation.tokens]
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    attributions: dict[str, Attribution] = {}
    for name in request.attribution.methods:
        with Clock() as clock:
            attributions[name] = attribute_tokens(
                explainer.model, explainer.layout, explainer.tokenizer, input_ids, targets, request.attribution,
                name, token_budget=explainer.limits.token_budget,
            )  # fmt: skip
        seconds[name], cpu_seconds[name] = clock.wall, clock.cpu
    return EngineRun(gen_clock.wall, gen_clock.cpu, seconds, cpu_seconds, generation, attributions)


def compare(engine_scores: np.ndarray, captum_rows: list[np.ndarray], prompt_length: int) -> dict[str, float]:
    """Max |engine - captum| over the causal region, absolute and relative to max |captum|."""
    diff = row_rel = top = outside = 0.0
    for k, row in enumerate(captum_rows):
        n = prompt_length + k
        ours = engine_scores[k, :n].astype(np.float64)
        d = float(np.abs(ours - row).max())
        diff = max(diff, d)
        row_rel = max(row_rel, d / max(float(np.abs(row).max()), 1e-30))
        top = max(top, float(np.abs(row).max()))
        outside = max(outside, float(np.abs(engine_scores[k, n:]).max(initial=0.0)))
    return {
        "max_abs_diff": diff,
        "max_abs_captum": top,
        "rel_to_matrix_max": diff / top,
        "max_rel_to_row_max": row_rel,
        "engine_max_abs_outside_causal": outside,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--baseline", default="eos", choices=("eos", "unk", "pad", "bos"))
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, alternating order (min is kept)")
    args = parser.parse_args()

    model, tokenizer, load_seconds = load(args.model, args.threads)
    explainer = Explainer(model, tokenizer)  # freezes the parameters: both sides run without weight gradients
    baseline_id = int(getattr(tokenizer, f"{args.baseline}_token_id"))
    request = ExplainRequest(
        prompt=args.prompt,
        generation=GenerationParams(max_new_tokens=args.max_new_tokens),
        attribution=AttributionParams(
            methods=METHODS,
            target="log_probability",
            n_steps=args.n_steps,
            integration="gausslegendre",
            baseline=args.baseline,
            aggregation="sum",
        ),
    )
    prompt_ids = explainer.prompt_ids(request)

    engine_runs: list[EngineRun] = []
    captum_runs: list[CaptumRun] = []
    for r in range(args.rounds):
        order = ("engine", "captum") if r % 2 == 0 else ("captum", "engine")
        for side in order:
            if side == "engine":
                engine_runs.append(run_engine(explainer, request))
            else:
                captum_runs.append(
                    run_captum(model, tokenizer, prompt_ids, args.max_new_tokens, baseline_id, args.n_steps)
                )
            if not args.json:
                print(f"  round {r + 1}: {side} done", flush=True)
    generation = engine_runs[-1].generation
    same_tokens = generation.generated_ids == captum_runs[-1].generated_ids

    def best(runs: list, clock: str, names: tuple[str, ...], with_generation: bool = False) -> float:
        """Min over rounds of the summed seconds of ``names`` (``clock``: 'wall' or 'cpu')."""
        per_run = []
        for run in runs:
            table_ = run.seconds if clock == "wall" else run.cpu_seconds
            gen = run.generate_seconds if clock == "wall" else run.generate_cpu_seconds
            per_run.append(sum(table_[n] for n in names) + (gen if with_generation else 0.0))
        return min(per_run)

    rows, figures = [], {}
    for name in METHODS:
        e_wall, c_wall = best(engine_runs, "wall", (name,)), best(captum_runs, "wall", (name,))
        e_cpu, c_cpu = best(engine_runs, "cpu", (name,)), best(captum_runs, "cpu", (name,))
        cmp = compare(
            engine_runs[-1].attributions[name].scores, captum_runs[-1].matrices[name], generation.prompt_length
        )
        figures[name] = {
            "engine_seconds": e_wall, "captum_seconds": c_wall, "ratio_wall": c_wall / e_wall,
            "engine_cpu_seconds": e_cpu, "captum_cpu_seconds": c_cpu, "ratio_cpu": c_cpu / e_cpu, **cmp,
        }  # fmt: skip
        rows.append((name, e_wall, c_wall, c_wall / e_wall, e_cpu, c_cpu, c_cpu / e_cpu, cmp["max_abs_diff"],
                     cmp["max_abs_captum"], cmp["rel_to_matrix_max"], cmp["max_rel_to_row_max"]))  # fmt: skip
    totals = {}
    for label, gen in (("attribution, both methods", False), ("end to end (incl. generation)", True)):
        totals[label] = {
            f"{side}_{clock}": best(runs, clock, METHODS, gen)
            for side, runs in (("engine", engine_runs), ("captum", captum_runs))
            for clock in ("wall", "cpu")
        }
    document = {
        "environment": environment(args.threads),
        "model": str(args.model),
        "prompt": args.prompt,
        "prompt_tokens": generation.prompt_length,
        "generated_text": generation.generated_text,
        "generated_tokens": len(generation.generated_ids),
        "finish_reason": generation.finish_reason,
        "same_generated_tokens": same_tokens,
        "baseline": [args.baseline, baseline_id],
        "n_steps": args.n_steps,
        "rounds": args.rounds,
        "prefixes_set_by_ids": captum_runs[-1].retokenized,
        "methods": figures,
        "totals": totals,
        "all_rounds": {
            side: [{"wall": r.seconds, "cpu": r.cpu_seconds, "generate_wall": r.generate_seconds} for r in runs]
            for side, runs in (("engine", engine_runs), ("captum", captum_runs))
        },
        "load_seconds": load_seconds,
    }
    if args.json_out:
        args.json_out.write_text(json_text(document))
    if args.json:
        print(json_text(document))
        return
    print(f"\nenvironment {document['environment']}")
    print(f"prompt {args.prompt!r} ({generation.prompt_length} tokens) -> {generation.generated_text!r}")
    print(f"  {len(generation.generated_ids)} generated ({generation.finish_reason}); Captum's greedy HF generate "
          f"gave the same tokens: {same_tokens}; baseline {args.baseline} (id {baseline_id}) on both sides; "
          f"prefixes passed by ids: {document['prefixes_set_by_ids']}")  # fmt: skip
    print(f"  min of {args.rounds} alternating rounds per side\n")
    headers = ["method", "engine wall s", "captum wall s", "ratio wall", "engine CPU s", "captum CPU s",
               "ratio CPU", "max |diff|", "max |captum|", "diff/max", "max row diff/row max"]  # fmt: skip
    print(table(headers, rows))
    print("ratio = captum / engine (> 1: the engine is faster)\n")
    print(table(
        ["work", "engine wall s", "captum wall s", "ratio wall", "engine CPU s", "captum CPU s", "ratio CPU"],
        [(label, t["engine_wall"], t["captum_wall"], t["captum_wall"] / t["engine_wall"], t["engine_cpu"],
          t["captum_cpu"], t["captum_cpu"] / t["engine_cpu"]) for label, t in totals.items()],
    ))  # fmt: skip
    print("\nall rounds, attribution wall seconds per method:")
    for side, runs in (("engine", engine_runs), ("captum", captum_runs)):
        print(f"  {side}: {[{k: round(v, 2) for k, v in r.seconds.items()} for r in runs]}")


if __name__ == "__main__":
    main()
