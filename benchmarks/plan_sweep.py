"""The engine's cut of a gradient attribution, timed variant by variant: targets per batched backward and
segments of the shared forward (``ecco_engine.budget``), in one process on the same generated ids.

Work: the default model, one prompt of ``speed.py`` (10 or 40 tokens), 16 generated tokens, one method
(IG with 32 Gauss-Legendre steps, eos baseline, or gradient x input), log-probability target, signed sum.
Each variant sets ``MAX_TARGETS_PER_BACKWARD`` and ``MAX_SEGMENTS`` (``--variants``: ``T/S`` pairs; ``S=1``:
one unsegmented forward) and runs ``attribute_tokens``; rounds alternate the order. Printed: CPU seconds
per variant and round, and each variant's best relative to the first.

``python benchmarks/plan_sweep.py [--prompt 40] [--method integrated_gradients] [--variants 4/4,1/1,1/4,2/8]
[--rounds 2] [--device cuda]``
"""

from __future__ import annotations

import time

import _common  # noqa: F401  (sets sys.path before the engine is imported)
import torch
from _common import base_parser, load, table
from speed import PROMPTS, attribute_generated

import ecco_engine.budget as budget
from ecco_engine.explainer import Explainer
from ecco_engine.types import ExplainRequest, GenerationParams


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=40, choices=sorted(PROMPTS))
    parser.add_argument("--method", default="integrated_gradients", choices=["integrated_gradients", "grad_x_input"])
    parser.add_argument("--variants", default="4/4,1/1,1/4,2/8", help="targets-per-backward/segments pairs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    model, tokenizer, _ = load(args.model, args.threads)
    model.to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    explainer = Explainer(model, tokenizer)
    generation = explainer.generate(
        ExplainRequest(prompt=PROMPTS[args.prompt], generation=GenerationParams(max_new_tokens=16))
    )
    # CPU seconds on a CPU (the steadier measure on a shared machine), wall seconds on a GPU
    clock = time.perf_counter if args.device.startswith("cuda") else time.process_time
    variants = [tuple(int(x) for x in v.split("/")) for v in args.variants.split(",")]
    best: dict[tuple[int, ...], float] = {}
    saved = (budget.MAX_TARGETS_PER_BACKWARD, budget.MAX_SEGMENTS, budget.MIN_SEGMENT_ROWS)
    try:
        for r in range(args.rounds):
            for variant in variants if r % 2 == 0 else list(reversed(variants)):
                budget.MAX_TARGETS_PER_BACKWARD, budget.MAX_SEGMENTS = variant
                budget.MIN_SEGMENT_ROWS = 1  # the variant decides, whatever the points per forward
                start = clock()
                attribute_generated(explainer, generation, args.method, n_steps=32)
                sync()
                seconds = clock() - start
                best[variant] = min(best.get(variant, float("inf")), seconds)
                print(f"  round {r}: {variant[0]} targets/backward, up to {variant[1]} segments: {seconds:.2f} s")
    finally:
        budget.MAX_TARGETS_PER_BACKWARD, budget.MAX_SEGMENTS, budget.MIN_SEGMENT_ROWS = saved
    first = best[variants[0]]
    print(f"\n{args.method}, {args.prompt}-token prompt, 16 generated tokens, {args.threads} threads")
    print(table(
        ["targets/backward", "segments (at most)", "best s (CPU s on a CPU, wall on a GPU)", "/ first variant"],
        [(v[0], v[1], best[v], best[v] / first) for v in variants],
    ))  # fmt: skip


if __name__ == "__main__":
    main()
