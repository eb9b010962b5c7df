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
    """Every combination worth measuring (see the module doc)."""
    out = [Config("random", "-", "-")]
    for aggregation in ("l2_normalized", "sum"):
        for baseline in ("eos", "bos", "zero"):
            out.append(Config("integrated_gradients", "probability", aggregation, baseline))
        out.append(Config("integrated_gradients", "log_probability", aggregation, "eos"))
    for target in ("probability", "log_probability", "logit"):
        for aggregation in ("l2_normalized", "sum"):
            out.append(Config("grad_x_input", target, aggregation))
        out.append(Config("saliency", target, "l2_normalized"))
    for aggregation in ("l2_normalized", "sum"):
        for baseline in ("eos", "bos"):
            out.append(Config("occlusion", "probability", aggregation, baseline))
        out.append(Config("occlusion", "log_probability", aggregation, "eos"))
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


def main() -> None:
    parser = _common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=Path, default=PROMPTS, help="one prompt a line (default: %(default)s)")
    parser.add_argument("--limit", type=int, help="use only the first N prompts")
    parser.add_argument("--new-tokens", type=int, default=3, help="generated (explained) tokens per prompt")
    parser.add_argument("--n-steps", type=int, default=16, help="integrated-gradients steps (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random attribution")
    args = parser.parse_args()

    import numpy as np

    from ecco_engine import REGISTRY, AttributionParams, Explainer, ExplainRequest, GenerationParams
    from ecco_engine.attribution import TargetSet, attribute_tokens
    from ecco_engine.errors import NonFiniteResult
    from ecco_engine.faithfulness import measure_faithfulness
    from ecco_engine.faithfulness_types import FaithfulnessParams

    model, tokenizer, _ = _common.load(args.model, args.threads)
    explainer = Explainer(model, tokenizer)
    prompts = read_prompts(args.prompts)[: args.limit]
    rng = np.random.default_rng(args.seed)
    faith = {
        name: FaithfulnessParams(perturbation=name, replacement_token=token)  # type: ignore[arg-type]
        for name, token in PERTURBATIONS
    }
    chosen = configs(REGISTRY)
    # config -> perturbation -> metric -> per-token values; config -> seconds, token-rows, failures
    metrics: dict[Config, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    seconds: dict[Config, float] = defaultdict(float)
    token_rows: dict[Config, int] = defaultdict(int)
    failed: dict[Config, int] = defaultdict(int)
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
                    failed[config] += 1
                    continue
                scores = attribution.scores
                token_rows[config] += attribution.cost.token_rows
            seconds[config] += time.perf_counter() - start
            for name, params_f in faith.items():
                result = measure_faithfulness(
                    model, explainer.layout, tokenizer, input_ids, positions, scores, params_f,
                    token_budget=explainer.budget.token_budget,
                )  # fmt: skip
                store = metrics[config][name]
                store["comprehensiveness"] += result.comprehensiveness.mean(axis=1).tolist()
                store["sufficiency"] += result.sufficiency.mean(axis=1).tolist()
                store["aopc"] += result.aopc.tolist()
                store["faithfulness_rows"].append(result.forward_token_rows)
        print(f"prompt {p + 1}/{len(prompts)} done", flush=True)

    n = len(prompts)
    print(
        f"\n{n} prompts x {args.new_tokens} generated tokens ({n_tokens} explained tokens); IG {args.n_steps}"
        f" steps (gauss-legendre); fractions {faith['deletion'].fractions}, AOPC over up to"
        f" {faith['deletion'].aopc_steps} tokens; torch threads {args.threads}\n"
    )
    for name, token in PERTURBATIONS:
        how = name + (f" by {token}" if token else "")
        ranked = sorted(chosen, key=lambda c: -mean_se(metrics[c][name]["comprehensiveness"])[0])
        rows = []
        for config in ranked:
            store = metrics[config][name]
            comp, comp_se = mean_se(store["comprehensiveness"])
            suff, suff_se = mean_se(store["sufficiency"])
            aopc, aopc_se = mean_se(store["aopc"])
            ok = n - failed[config]
            rows.append(
                [
                    config.label, f"{comp:.3f} ± {comp_se:.3f}", f"{suff:.3f} ± {suff_se:.3f}",
                    f"{aopc:.3f} ± {aopc_se:.3f}", seconds[config] / max(ok, 1),
                    round(token_rows[config] / max(ok, 1)), failed[config],
                ]
            )  # fmt: skip
        print(f"### Perturbation: {how}\n")
        headers = ["configuration", "comprehensiveness ↑", "sufficiency ↓", "AOPC ↑", "s / prompt"]
        print(_common.table([*headers, "token-rows / prompt", "non-finite"], rows))
        faith_rows = sum(sum(metrics[c][name]["faithfulness_rows"]) for c in chosen) / max(1, n * len(chosen))
        print(f"\nfaithfulness cost: {faith_rows:.0f} forward token-rows per prompt and configuration\n")
    demo(model, explainer, tokenizer, args.n_steps)


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
