"""Integrated-gradients completeness error on the default model, as the step count grows.

For a few ordinary prompts, greedy-generate a few tokens and explain every generated token with
the engine's integrated gradients, for each target (probability, log-probability), baseline
(eos, pad, unk, zero) and step count. Completeness says sum(attributions) = f(x) - f(baseline);
the engine reports the difference (the convergence delta) per token. Printed per configuration,
over all generated tokens of all prompts:

- median and max |delta|                      (target units)
- median |gap| = |f(x) - f(baseline)|          (what the attributions must add up to)
- median |delta| / |gap|                       (relative completeness error)
- NaN: tokens whose run ended in the engine's NonFiniteResult (reported, not raised)

Run from the repository root: ``python benchmarks/completeness.py [--json] [--quick]``;
``--stage screen|converge|all|full`` picks the configurations (see ``plan``), ``--budget-minutes``
(default 15) skips those that would not fit and lists them, ``--path-scan 1001`` instead prints how
much the target swings along the straight path (forward passes only; explains the slow convergence).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import _common  # noqa: F401  (sets sys.path before the engine is imported)
import numpy as np
from _common import base_parser, environment, json_text, load, table

from ecco_engine.errors import InvalidRequest, NonFiniteResult
from ecco_engine.explainer import Explainer
from ecco_engine.types import AttributionParams, ExplainRequest, GenerationParams

PROMPTS = (
    "The capital of France is",
    "My favourite food is",
    "In 1969, the first man on the moon was",
    "The best way to learn a new language is",
)
TARGETS = ("probability", "log_probability")
BASELINES = ("eos", "pad", "unk", "zero")
STEPS = (16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class Config:
    target: str
    baseline: str
    integration: str
    n_steps: int
    n_prompts: int


@dataclass(frozen=True)
class Row:
    target: str
    baseline: str
    integration: str
    n_steps: int
    prompts: int
    tokens: int
    median_abs_delta: float
    max_abs_delta: float
    median_abs_gap: float
    median_rel_delta: float
    nan_tokens: int
    seconds: float
    #: per prompt, per generated token (None where the run was not finite)
    deltas: tuple[tuple[float | None, ...], ...] = ()
    gaps: tuple[tuple[float | None, ...], ...] = ()


def plan(n_prompts: int, stage: str, quick: bool) -> list[Config]:
    """The configurations to run, most important first (a time budget cuts from the end).

    ``screen``: every (target, baseline) at 16 / 32 / 64 steps on every prompt, then the Riemann
    trapezoid rule for one pair and for the zero baseline. ``converge``: the candidates for the
    default (probability with eos / zero, log-probability with eos) at 128, 256 and 512 steps on
    fewer prompts. ``all``: both. ``full``: every target x baseline x step count on every prompt
    (about an hour on 2 idle cores; cost grows linearly with steps and prompts).
    """
    gl = "gausslegendre"
    if quick:
        return [Config(t, b, gl, n, 1) for t in TARGETS for b in BASELINES for n in (16, 32)]
    if stage == "full":
        configs = [Config(t, b, gl, n, n_prompts) for t in TARGETS for b in BASELINES for n in STEPS]
        configs += [Config("probability", "eos", "riemann_trapezoid", n, n_prompts) for n in STEPS]
        return [*configs, Config("probability", "zero", "riemann_trapezoid", 16, 1)]
    few = min(2, n_prompts)
    screen = [Config(t, b, gl, n, n_prompts) for t in TARGETS for b in BASELINES for n in (16, 32, 64)]
    screen += [
        Config("probability", "eos", "riemann_trapezoid", 16, n_prompts),
        Config("probability", "zero", "riemann_trapezoid", 16, 1),  # evaluates alpha = 0: expect NaN
        Config("probability", "eos", "riemann_trapezoid", 64, n_prompts),
    ]
    converge = [
        Config("probability", "eos", gl, 128, few),
        Config("probability", "zero", gl, 128, few),
        Config("log_probability", "eos", gl, 128, 1),
        Config("probability", "eos", gl, 256, 1),
        Config("probability", "zero", gl, 256, 1),
        Config("log_probability", "eos", gl, 256, 1),
        Config("probability", "eos", gl, 512, 1),
        Config("probability", "zero", gl, 512, 1),
        Config("log_probability", "eos", gl, 512, 1),
    ]
    return {"screen": screen, "converge": converge, "all": screen + converge}[stage]


def run_config(explainer: Explainer, config: Config, max_new_tokens: int) -> Row | None:
    deltas: list[tuple[float | None, ...]] = []
    gaps: list[tuple[float | None, ...]] = []
    start = time.perf_counter()
    for prompt in PROMPTS[: config.n_prompts]:
        request = ExplainRequest(
            prompt=prompt,
            generation=GenerationParams(max_new_tokens=max_new_tokens),
            attribution=AttributionParams(
                methods=("integrated_gradients",),
                target=config.target,
                baseline=config.baseline,
                integration=config.integration,
                n_steps=config.n_steps,
                max_n_steps=max(512, config.n_steps),
                aggregation="sum",
            ),
        )
        try:
            attribution = explainer.explain(request).attribution("integrated_gradients")
        except InvalidRequest as error:  # e.g. the tokenizer has no such special token
            if error.field == "baseline":
                return None
            raise
        except NonFiniteResult:
            n_generated = len(explainer.generate(request).generated_ids)
            deltas.append((None,) * n_generated)
            gaps.append((None,) * n_generated)
            continue
        assert attribution.convergence_deltas is not None and attribution.baseline_scores is not None
        deltas.append(tuple(float(d) for d in attribution.convergence_deltas))
        gaps.append(tuple(float(g) for g in attribution.target_scores - attribution.baseline_scores))
    seconds = time.perf_counter() - start
    flat_d = np.array([d for row in deltas for d in row if d is not None], dtype=float)
    flat_g = np.array([g for row in gaps for g in row if g is not None], dtype=float)
    n_tokens = sum(len(row) for row in deltas)
    nan = n_tokens - flat_d.size

    def stat(fn, values: np.ndarray) -> float:
        return float(fn(values)) if values.size else float("nan")

    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(flat_d) / np.abs(flat_g)
    return Row(
        target=config.target,
        baseline=config.baseline,
        integration=config.integration,
        n_steps=config.n_steps,
        prompts=config.n_prompts,
        tokens=n_tokens,
        median_abs_delta=stat(np.median, np.abs(flat_d)),
        max_abs_delta=stat(np.max, np.abs(flat_d)),
        median_abs_gap=stat(np.median, np.abs(flat_g)),
        median_rel_delta=stat(np.median, rel),
        nan_tokens=nan,
        seconds=seconds,
        deltas=tuple(deltas),
        gaps=tuple(gaps),
    )


def path_scan(explainer: Explainer, prompt: str, baseline: str, max_new_tokens: int, points: int) -> list[dict]:
    """Why the quadrature struggles: the target along the straight path baseline -> input.

    Forward passes only, at ``points`` evenly spaced alphas; every generated token of the prompt is
    read from the same forward (the path is the same for all of them: every position moves at
    once). Per token: the gap f(1) - f(0), the total variation sum |f(a_i+1) - f(a_i)| (equal to
    |gap| for a monotone path; far larger means the integrand swings), and the largest change
    between neighbouring alphas.
    """
    import torch

    from ecco_engine.attribution import baseline_embeddings
    from ecco_engine.targets import target_function
    from ecco_engine.types import TargetKind

    g = explainer.generate(ExplainRequest(prompt=prompt, generation=GenerationParams(max_new_tokens=max_new_tokens)))
    ids = [t.id for t in g.tokens]
    layout = explainer.layout
    with torch.no_grad():
        x = layout.embedding(torch.tensor([ids]))[0]
        xb = baseline_embeddings(layout, explainer.tokenizer, baseline, len(ids))[0]
        alphas = torch.linspace(0.0, 1.0, points)
        keep = torch.arange(g.prompt_length - 1, len(ids) - 1)
        targets = torch.tensor(ids[g.prompt_length :])
        log_p = []
        for chunk in alphas.split(128):
            emb = xb + chunk.view(-1, 1, 1) * (x - xb)
            logits = explainer.model(inputs_embeds=emb, use_cache=False, logits_to_keep=keep).logits.float()
            rows = logits.shape[0]
            log_p.append(
                torch.stack(
                    [
                        target_function(
                            TargetKind.LOG_PROBABILITY, logits[:, i], targets[i].expand(rows), targets[i].expand(rows)
                        )
                        for i in range(len(targets))
                    ],
                    dim=1,
                )
            )
        lp = torch.cat(log_p).double().numpy()  # (points, n_targets)
    out = []
    for name, values in (("probability", np.exp(lp)), ("log_probability", lp)):
        steps = np.abs(np.diff(values, axis=0))
        for i in range(values.shape[1]):
            out.append(
                {
                    "prompt": prompt,
                    "baseline": baseline,
                    "target": name,
                    "token": explainer.tokenizer.decode([ids[g.prompt_length + i]]),
                    "gap": float(values[-1, i] - values[0, i]),
                    "total_variation": float(steps[:, i].sum()),
                    "max_jump": float(steps[:, i].max()),
                    "max_jump_at_alpha": float(alphas[1:][int(steps[:, i].argmax())]),
                }
            )
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=3, help="prompts per configuration")
    parser.add_argument(
        "--stage", default="all", choices=("screen", "converge", "all", "full"), help="which configurations (see plan)"
    )
    parser.add_argument(
        "--budget-minutes", type=float, default=15.0, help="skip configurations that would not fit (0: no limit)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 prompt, 16 and 32 steps")
    parser.add_argument(
        "--path-scan", type=int, default=0, metavar="POINTS", help="only scan the target along the path (e.g. 1001)"
    )
    args = parser.parse_args()
    n_prompts = 1 if args.quick else min(args.prompts, len(PROMPTS))

    model, tokenizer, load_seconds = load(args.model, args.threads)
    explainer = Explainer(model, tokenizer)
    special = {name: getattr(tokenizer, f"{name}_token", None) for name in ("eos", "pad", "unk", "bos")}
    special_ids = {name: getattr(tokenizer, f"{name}_token_id", None) for name in special}
    if args.path_scan:
        scans = [
            row
            for baseline in ("eos", "unk", "zero")
            for prompt in PROMPTS[:n_prompts]
            for row in path_scan(explainer, prompt, baseline, args.max_new_tokens, args.path_scan)
        ]
        if args.json_out:
            args.json_out.write_text(json_text({"environment": environment(args.threads), "path_scan": scans}))
        if args.json:
            print(json_text({"environment": environment(args.threads), "path_scan": scans}))
            return
        print(f"target along the straight path, {args.path_scan} points; TV = total variation, median over tokens\n")
        summary = []
        for baseline in ("eos", "unk", "zero"):
            for target in TARGETS:
                rows_ = [r for r in scans if r["baseline"] == baseline and r["target"] == target]
                gap = np.array([abs(r["gap"]) for r in rows_])
                tv = np.array([r["total_variation"] for r in rows_])
                jump = np.array([r["max_jump"] for r in rows_])
                summary.append(
                    (target, baseline, len(rows_), float(np.median(gap)), float(np.median(tv)),
                     float(np.median(tv / np.maximum(gap, 1e-12))), float(np.median(jump)), float(jump.max()))
                )  # fmt: skip
        headers = ["target", "baseline", "tokens", "med |gap|", "med TV", "med TV/|gap|", "med max jump", "max jump"]
        print(table(headers, summary))
        return
    generations = []
    for prompt in PROMPTS[:n_prompts]:
        g = explainer.generate(
            ExplainRequest(prompt=prompt, generation=GenerationParams(max_new_tokens=args.max_new_tokens))
        )
        generations.append({"prompt": prompt, "generated": g.generated_text, "n_generated": len(g.generated_ids)})

    start = time.perf_counter()
    rows: list[Row] = []
    skipped: list[str] = []
    seen_baseline_ids: dict[int, str] = {}
    not_run: list[Config] = []
    seconds_per_unit: list[float] = []  # one unit: 16 steps x 1 prompt
    for config in plan(n_prompts, args.stage, args.quick):
        units = config.n_steps / 16 * config.n_prompts
        if args.budget_minutes and seconds_per_unit:
            estimate = units * float(np.median(seconds_per_unit))
            if time.perf_counter() - start + estimate > args.budget_minutes * 60:
                not_run.append(config)
                continue
        token_id = special_ids.get(config.baseline)
        if config.baseline != "zero" and token_id is not None:
            first = seen_baseline_ids.setdefault(token_id, config.baseline)
            if first != config.baseline:  # e.g. pad is the eos token: same numbers, skip
                if f"{config.baseline} (= {first})" not in skipped:
                    skipped.append(f"{config.baseline} (= {first})")
                continue
        row = run_config(explainer, config, args.max_new_tokens)
        if row is None:
            if config.baseline not in skipped:
                skipped.append(f"{config.baseline} (no such token)")
            continue
        rows.append(row)
        seconds_per_unit.append(row.seconds / units)
        if not args.json:
            print(f"  done {config} in {row.seconds:.1f}s", flush=True)
    total_seconds = time.perf_counter() - start

    document = {
        "environment": environment(args.threads),
        "model": str(args.model),
        "special_tokens": {k: [special[k], special_ids[k]] for k in special},
        "generations": generations,
        "skipped_baselines": skipped,
        "not_run_for_time": [asdict(c) for c in not_run],
        "budget_minutes": args.budget_minutes,
        "stage": args.stage,
        "rows": [asdict(r) for r in rows],
        "load_seconds": load_seconds,
        "total_seconds": total_seconds,
    }
    if args.json_out:
        args.json_out.write_text(json_text(document))
    if args.json:
        print(json_text(document))
        return
    print(f"\nmodel {args.model.name}; special tokens {special} ids {special_ids}")
    print(f"environment {environment(args.threads)}")
    for g in generations:
        print(f"  {g['prompt']!r} -> {g['generated']!r}")
    if skipped:
        print(f"skipped baselines: {', '.join(skipped)}")
    headers = [
        "target",
        "baseline",
        "integration",
        "steps",
        "prompts",
        "tokens",
        "med |delta|",
        "max |delta|",
        "med |gap|",
        "med |delta|/|gap|",
        "NaN",
        "seconds",
    ]
    print()
    print(
        table(
            headers,
            [
                (
                    r.target,
                    r.baseline,
                    r.integration,
                    r.n_steps,
                    r.prompts,
                    r.tokens,
                    r.median_abs_delta,
                    r.max_abs_delta,
                    r.median_abs_gap,
                    r.median_rel_delta,
                    r.nan_tokens,
                    r.seconds,
                )
                for r in rows
            ],
        )
    )
    if not_run:
        print(f"\nnot run (time budget {args.budget_minutes:g} min):")
        for c in not_run:
            print(f"  {c.target} / {c.baseline} / {c.integration} / {c.n_steps} steps / {c.n_prompts} prompts")
    print(f"\nload {load_seconds:.1f}s, benchmark {total_seconds:.0f}s")


if __name__ == "__main__":
    main()
