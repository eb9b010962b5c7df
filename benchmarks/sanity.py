"""Model-randomization sanity check (Adebayo et al. 2018) of every registered method on the default model.

The model is randomized cumulatively from the top (``ecco_tools.sanity.cascade``: unembedding and
final norm, then the top 1, 2, 4, ... decoder blocks, then the input embedding); at every stage each
method attributes the same tokens (the model's greedy continuation of each prompt, fixed) and its
scores are compared with the original model's by Spearman rank correlation, per explained token.
Prints the mean correlation (and its standard error) per method and stage.

    python benchmarks/sanity.py                   # the first 10 prompts x 3 tokens, IG with 16 steps
"""

from __future__ import annotations

import math
from pathlib import Path

import _common
from faithfulness import PROMPTS, mean_se, read_prompts

TOOLS = _common.REPO_ROOT / "tools"


def main() -> None:
    parser = _common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=Path, default=PROMPTS, help="one prompt a line (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=10, help="use the first N prompts (default %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=3, help="explained tokens per prompt")
    parser.add_argument("--n-steps", type=int, default=16, help="integrated-gradients steps (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomization")
    args = parser.parse_args()

    import sys

    sys.path.insert(0, str(TOOLS))
    from ecco_engine import REGISTRY, AttributionParams, Explainer, ExplainRequest, GenerationParams
    from ecco_engine.attribution import TargetSet
    from ecco_tools.sanity import cascade_correlations

    model, tokenizer, _ = _common.load(args.model, args.threads)
    explainer = Explainer(model, tokenizer)
    sequences = []
    for prompt in read_prompts(args.prompts)[: args.limit]:
        generation = explainer.generate(
            ExplainRequest(prompt=prompt, generation=GenerationParams(max_new_tokens=args.new_tokens))
        )
        ids = [t.id for t in generation.tokens]
        positions = tuple(range(generation.prompt_length, len(ids)))
        sequences.append((ids, TargetSet(positions=positions, token_ids=tuple(ids[p] for p in positions))))
    methods = sorted(REGISTRY)
    params = AttributionParams(n_steps=args.n_steps)  # the defaults: probability, l2_normalized, eos
    results = cascade_correlations(model, tokenizer, sequences, params, methods, seed=args.seed)
    n_tokens = sum(len(t.positions) for _, t in sequences)
    print(
        f"{len(sequences)} prompts x {args.new_tokens} tokens ({n_tokens} explained tokens); target probability,"
        f" aggregation l2_normalized, baseline eos, IG {args.n_steps} steps; seed {args.seed}\n"
    )
    rows = []
    for stage, correlations in results:
        cells: list[object] = [stage.name]
        for name in methods:
            values = [float(v) for v in correlations[name] if not math.isnan(v)]
            mean, se = mean_se(values)
            cells.append(f"{mean:.3f} ± {se:.3f}")
        rows.append(cells)
    print(_common.table(["randomized", *methods], rows))
    print("\nSpearman rank correlation with the original model's scores (mean ± standard error over explained tokens)")


if __name__ == "__main__":
    main()
