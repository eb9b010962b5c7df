"""What reduced precision costs integrated gradients, and where: per-row agreement with float32, and the
path point that decides it.

Work: the default model, one prompt of ``speed.py``, 16 generated tokens, IG (``--n-steps`` Gauss-Legendre
steps, eos baseline, log-probability target). For each aggregation (signed sum, l2) and each precision
(bfloat16, float16) against float32: the median and least per-row Spearman rank correlation, the share of
rows whose largest source is the same, and the largest row difference relative to the float32 row's
maximum. Then, for one generated token (``--token``), each path point's attributions summed in absolute
value, per precision: a point where float32 is already steep is where low precision moves most.

``python benchmarks/precision.py [--prompt 10] [--n-steps 8] [--token 3] [--threads 2]``
"""

from __future__ import annotations

import time

import _common  # noqa: F401  (sets sys.path before the engine is imported)
import numpy as np
import torch
from _common import base_parser, load, table
from captum.attr._utils.approximation_methods import approximation_parameters
from scipy.stats import spearmanr
from speed import PROMPTS, attribute_generated

from ecco_engine.attribution import autocast
from ecco_engine.explainer import Explainer
from ecco_engine.targets import TargetForward
from ecco_engine.types import ExplainRequest, GenerationParams, Precision, TargetKind


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=10, choices=sorted(PROMPTS))
    parser.add_argument("--n-steps", type=int, default=8)
    parser.add_argument("--token", type=int, default=3, help="which generated token's path to print (0-based)")
    args = parser.parse_args()
    model, tokenizer, _ = load(args.model, args.threads)
    explainer = Explainer(model, tokenizer)
    generation = explainer.generate(
        ExplainRequest(prompt=PROMPTS[args.prompt], generation=GenerationParams(max_new_tokens=16))
    )
    ids, n_prompt = [t.id for t in generation.tokens], generation.prompt_length

    def rows(precision: str, aggregation: str) -> tuple[np.ndarray, float]:
        start = time.process_time()
        result = attribute_generated(
            explainer,
            generation,
            "integrated_gradients",
            n_steps=args.n_steps,
            aggregation=aggregation,
            precision=precision,
        )
        return result.scores.astype(np.float64), time.process_time() - start

    summary = []
    for aggregation in ("sum", "l2"):
        reference, seconds32 = rows("float32", aggregation)
        for precision in ("bfloat16", "float16"):
            low, seconds = rows(precision, aggregation)
            spans = [n_prompt + k for k in range(reference.shape[0])]
            corr = [spearmanr(low[k, :n], reference[k, :n]).statistic for k, n in enumerate(spans)]
            top = np.mean(
                [np.abs(low[k, :n]).argmax() == np.abs(reference[k, :n]).argmax() for k, n in enumerate(spans)]
            )
            scale = np.abs(reference).max(axis=1, keepdims=True)
            summary.append((
                aggregation, precision, float(np.median(corr)), float(np.min(corr)), float(top),
                float((np.abs(low - reference) / scale).max()), seconds / seconds32,
            ))  # fmt: skip
    print(f"\nIG {args.n_steps} steps, {args.prompt}-token prompt, 16 generated tokens; against float32:")
    print(table(
        ["aggregation", "precision", "rank corr. median", "rank corr. least", "same top source",
         "max row diff / row max", "CPU time / float32"],
        summary,
    ))  # fmt: skip

    # one token's path, point by point
    position = n_prompt + args.token
    embedding = explainer.layout.embedding
    inputs = embedding(torch.tensor([ids[:position]])).detach()
    baseline = embedding.weight[int(tokenizer.eos_token_id)].detach().view(1, 1, -1).expand_as(inputs)
    _, alphas = approximation_parameters("gausslegendre")
    alpha = torch.tensor(alphas(args.n_steps), dtype=inputs.dtype).view(-1, 1, 1)
    points = (baseline + alpha * (inputs - baseline)).detach().requires_grad_()
    forward = TargetForward(model, explainer.layout.unembedding, TargetKind.LOG_PROBABILITY)
    n = args.n_steps
    path = []
    for precision in (Precision.FLOAT32, Precision.BFLOAT16, Precision.FLOAT16):
        with forward.attach(), torch.enable_grad(), autocast(precision, inputs.device):
            scores = forward.per_row(
                points, torch.full((n,), position - 1), torch.full((n,), ids[position]), torch.full((n,), ids[position])
            )
        (grads,) = torch.autograd.grad(scores.sum(), points)
        path.append(((grads * (inputs - baseline)).sum(-1).abs().sum(-1)).float().tolist())
    print(f"\ngenerated token {args.token} ({tokenizer.decode([ids[position]])!r}): each path point's attributions,"
          " summed in absolute value")  # fmt: skip
    print(table(
        ["alpha", "float32", "bfloat16", "float16"],
        [(float(alpha[i]), path[0][i], path[1][i], path[2][i]) for i in range(n)],
    ))  # fmt: skip


if __name__ == "__main__":
    main()
