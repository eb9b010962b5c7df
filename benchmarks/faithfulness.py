"""Which attribution method, target, aggregation and baseline is most faithful on the default model?

For every prompt of ``benchmarks/data/faithfulness_prompts.txt`` the model generates a few tokens
greedily (3 by default); each configuration attributes them and its faithfulness is measured
(``ecco_engine.faithfulness``: comprehensiveness, sufficiency, AOPC on the probability of each
generated token) under two perturbations: deletion and replacement by the eos token. A random
attribution (seeded) is the floor. Prints one table per perturbation (mean over explained tokens,
with its standard error), each configuration's cost (seconds and token-rows per prompt), and the
demo's per-token evidence for " Paris" after "The capital of France is".

    python benchmarks/faithfulness.py                  # 48 prompts x 3 tokens, IG with 16 steps
    python benchmarks/faithfulness.py --limit 5 --new-tokens 2

Aggregations ``l2`` and ``l2_normalized`` rank every row's sources identically (a row divided by
its sum), so their faithfulness is identical: ``l2_normalized`` stands for both. Methods registered
besides the four known here run with target probability, both aggregations and the eos baseline.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import _common

PROMPTS = _common.REPO_ROOT / "benchmarks" / "data" / "faithfulness_prompts.txt"
PERTURBATIONS = (("deletion", None), ("replacement", "eos"))


@dataclass(frozen=True)
class Config:
    """One attribution configuration (``method == "random"``: seeded uniform scores)."""

    method: str
    target: str = "probability"
    aggregation: str = "l2_normalized"
    baseline: str | None = None

    @property
    def label(self) -> str:
        parts = [self.method, self.target, self.aggregation]
        if self.baseline is not None:
            parts.append(f"baseline {self.baseline}")
        return " · ".join(parts)


def configs(registry: dict) -> list[Config]:
    """The combinations worth measuring (see the module doc).

    For gradient x input and saliency, ``log_probability`` ranks exactly as ``probability`` (its gradient
    is the probability's divided by the positive probability, the same for every source), so only
    ``probability`` and ``logit`` are measured for them."""
    out = [Config("random", "-", "-")]
    out += [
        Config("integrated_gradients", "probability", "l2_normalized", "eos"),
        Config("integrated_gradients", "probability", "sum", "eos"),
        Config("integrated_gradients", "probability", "l2_normalized", "bos"),
        Config("integrated_gradients", "log_probability", "l2_normalized", "eos"),
        Config("grad_x_input", "probability", "l2_normalized"),
        Config("grad_x_input", "probability", "sum"),
        Config("grad_x_input", "logit", "l2_normalized"),
        Config("saliency", "probability", "l2_normalized"),
        Config("occlusion", "probability", "l2_normalized", "eos"),
        Config("occlusion", "probability", "sum", "eos"),
    ]
    known = {c.method for c in out}
    for name, cls in sorted(registry.items()):
        if name not in known:
            for aggregation in ("l2_normalized", "sum"):
                out.append(Config(name, "probability", aggregation, "eos" if cls.needs_baseline else None))
    return out


def read_prompts(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (NaN for no values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


@dataclass
class Tally:
    """What one configuration measured so far: per perturbation and metric the per-token values."""

    metrics: dict[str, dict[str, list[float]]]
    seconds: float = 0.0
    token_rows: int = 0
    faithfulness_rows: int = 0
    prompts: int = 0
    failed: int = 0


def report(chosen: list[Config], tallies: dict[Config, Tally], perturbations: list[tuple[str, str | None]]) -> None:
    """One table per perturbation, best comprehensiveness first."""
    for name, token in perturbations:
        how = name + (f" by {token}" if token else "")

        def comprehensiveness(c: Config, name: str = name) -> float:
            return mean_se(tallies[c].metrics[name]["comprehensiveness"])[0]

        rows = []
        for config in sorted(chosen, key=lambda c: -comprehensiveness(c)):
            tally = tallies[config]
            cells = [mean_se(tally.metrics[name][m]) for m in ("comprehensiveness", "sufficiency", "aopc")]
            ok = max(tally.prompts, 1)
            rows.append(
                [
                    config.label, *(f"{m:.3f} ± {se:.3f}" for m, se in cells),
                    tally.seconds / ok, round(tally.token_rows / ok), round(tally.faithfulness_rows / ok), tally.failed,
                ]
            )  # fmt: skip
        print(f"\n### Perturbation: {how}\n")
        headers = [
            "configuration",
            "comprehensiveness ↑",
            "sufficiency ↓",
            "AOPC ↑",
            "s / prompt",
            "token-rows / prompt",
        ]
        print(_common.table([*headers, "faithfulness token-rows / prompt", "non-finite"], rows), flush=True)


def main() -> None:
    parser = _common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=Path, default=PROMPTS, help="one prompt a line (default: %(default)s)")
    parser.add_argument("--limit", type=int, help="use only the first N prompts")
    parser.add_argument("--new-tokens", type=int, default=3, help="generated (explained) tokens per prompt")
    parser.add_argument("--n-steps", type=int, default=16, help="integrated-gradients steps (default %(default)s)")
    parser.add_argument("--aopc-steps", type=int, default=10, help="longest perturbation curve (default %(default)s)")
    parser.add_argument(
        "--perturbation",
        choices=("deletion", "replacement", "both"),
        default="deletion",
        help="deletion, replacement by eos, or both (default %(default)s)",
    )
    parser.add_argument("--report-every", type=int, default=10, help="print the tables every N prompts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random attribution")
    parser.add_argument("--skip-demo", action="store_true", help="leave out the demo's table")
    args = parser.parse_args()

    import numpy as np

    from ecco_engine import REGISTRY, AttributionParams, Explainer, ExplainRequest, GenerationParams
    from ecco_engine.attribution import TargetSet, attribute_tokens
    from ecco_engine.errors import NonFiniteResult
    from ecco_engine.faithfulness import measure_faithfulness
    from ecco_engine.faithfulness_types import FaithfulnessParams

    model, tokenizer, _ = _common.load(args.model, args.threads)
    explainer = Explainer(model, tokenizer)
    if not args.skip_demo:
        demo(model, explainer, tokenizer, args.n_steps)
    prompts = read_prompts(args.prompts)[: args.limit]
    rng = np.random.default_rng(args.seed)
    perturbations = [p for p in PERTURBATIONS if args.perturbation in (p[0], "both")]
    faith = {
        name: FaithfulnessParams(perturbation=name, replacement_token=token, aopc_steps=args.aopc_steps)  # type: ignore[arg-type]
        for name, token in perturbations
    }
    fractions = next(iter(faith.values())).fractions
    print(
        f"\n{len(prompts)} prompts x {args.new_tokens} generated tokens; IG {args.n_steps} steps (gauss-legendre);"
        f" fractions {fractions}, AOPC over up to {args.aopc_steps} tokens; torch threads {args.threads}"
    )
    chosen = configs(REGISTRY)
    tallies = {c: Tally(metrics=defaultdict(lambda: defaultdict(list))) for c in chosen}
    n_tokens = 0
    for p, prompt in enumerate(prompts):
        generation = explainer.generate(
            ExplainRequest(prompt=prompt, generation=GenerationParams(max_new_tokens=args.new_tokens))
        )
        input_ids = [t.id for t in generation.tokens]
        positions = tuple(range(generation.prompt_length, len(input_ids)))
        targets = TargetSet(positions=positions, token_ids=tuple(input_ids[i] for i in positions))
        n_tokens += len(positions)
        for config in chosen:
            tally = tallies[config]
            start = time.perf_counter()
            if config.method == "random":
                scores = rng.random((len(positions), max(positions)))
            else:
                params = AttributionParams(
                    methods=(config.method,),
                    target=config.target,  # type: ignore[arg-type]
                    aggregation=config.aggregation,  # type: ignore[arg-type]
                    baseline=config.baseline or "eos",
                    n_steps=args.n_steps,
                )
                try:
                    attribution = attribute_tokens(
                        model, explainer.layout, tokenizer, input_ids, targets, params, config.method,
                        memory=explainer.memory, budget=explainer.budget,
                    )  # fmt: skip
                except NonFiniteResult:
                    tally.failed += 1
                    continue
                scores = attribution.scores
                tally.token_rows += attribution.cost.token_rows
            tally.seconds += time.perf_counter() - start
            tally.prompts += 1
            for name, params_f in faith.items():
                result = measure_faithfulness(
                    model, explainer.layout, tokenizer, input_ids, positions, scores, params_f,
                    token_budget=explainer.budget.token_budget,
                )  # fmt: skip
                store = tally.metrics[name]
                store["comprehensiveness"] += result.comprehensiveness.mean(axis=1).tolist()
                store["sufficiency"] += result.sufficiency.mean(axis=1).tolist()
                store["aopc"] += result.aopc.tolist()
                tally.faithfulness_rows += result.forward_token_rows
        done = p + 1
        print(f"prompt {done}/{len(prompts)} done", flush=True)
        if done % args.report_every == 0 or done == len(prompts):
            print(f"\n## After {done} prompts ({n_tokens} explained tokens)")
            report(chosen, tallies, perturbations)


def demo(model, explainer, tokenizer, n_steps: int) -> None:
    """The README demo's " Paris": every method's score of each source, and what taking it out does."""
    import numpy as np
    import torch

    from ecco_engine import AttributionParams
    from ecco_engine.attribution import TargetSet, attribute_tokens
    from ecco_engine.faithfulness import score_prefixes
    from ecco_engine.targets import TargetForward
    from ecco_engine.types import TargetKind

    prompt_ids = tokenizer.encode("The capital of France is")
    paris = tokenizer.encode(" Paris", add_special_tokens=False)
    input_ids = [*prompt_ids, *paris[:1]]
    n = len(prompt_ids)
    targets = TargetSet(positions=(n,), token_ids=(input_ids[n],))
    columns: dict[str, np.ndarray] = {}
    for label, method, aggregation, baseline in (
        ("IG l2n eos", "integrated_gradients", "l2_normalized", "eos"),
        ("IG sum eos", "integrated_gradients", "sum", "eos"),
        ("IG sum bos", "integrated_gradients", "sum", "bos"),
        ("GxI l2n", "grad_x_input", "l2_normalized", "eos"),
        ("GxI sum", "grad_x_input", "sum", "eos"),
        ("occl eos", "occlusion", "sum", "eos"),
        ("occl bos", "occlusion", "sum", "bos"),
    ):
        params = AttributionParams(
            methods=(method,),
            aggregation=aggregation,
            baseline=baseline,
            n_steps=max(n_steps, 64),  # type: ignore[arg-type]
        )
        a = attribute_tokens(
            model, explainer.layout, tokenizer, input_ids, targets, params, method,
            memory=explainer.memory, budget=explainer.budget,
        )  # fmt: skip
        columns[label] = a.scores[0]
    layout = explainer.layout
    forward = TargetForward(model, layout.unembedding, TargetKind.PROBABILITY)
    with torch.no_grad(), forward.attach():
        embeddings = layout.embedding(torch.tensor([input_ids[:n]]))[0]
        full = np.ones(n, dtype=bool)
        rows = [(0, full.tobytes())]
        for j in range(n):
            kept = full.copy()
            kept[j] = False
            rows.append((0, kept.tobytes()))
        deleted, _ = score_prefixes(forward.per_row, embeddings, None, rows, [input_ids[n]], 1024)
        replaced = {}
        for name in ("eos", "bos"):
            token = layout.embedding.weight[getattr(tokenizer, f"{name}_token_id")]
            replaced[name], _ = score_prefixes(forward.per_row, embeddings, token, rows, [input_ids[n]], 1024)
    p = deleted[rows[0]]
    print(f'### The demo: " Paris" after "The capital of France is" (p = {p:.4f}; IG with {max(n_steps, 64)} steps)\n')
    headers = ["source", *columns, "p if deleted", "p if → eos", "p if → bos"]
    table_rows = []
    for j in range(n):
        cells: list[object] = [repr(tokenizer.decode([input_ids[j]]))]
        cells += [float(columns[c][j]) for c in columns]
        cells += [deleted[rows[j + 1]], replaced["eos"][rows[j + 1]], replaced["bos"][rows[j + 1]]]
        table_rows.append(cells)
    print(_common.table(headers, table_rows))


if __name__ == "__main__":
    main()
