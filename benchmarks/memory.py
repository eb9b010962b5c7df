"""Peak memory of a long attribution against the memory budget (``EngineLimits.memory_budget_bytes``).

Work: the default model, a ~2,000-token prompt, the next ``--targets`` tokens given as a continuation
(teacher forcing) and explained with integrated gradients, ``--n-steps`` steps. Each budget runs in a
fresh process; it prints the process's resident memory after loading the model, its peak during the
explanation (``ru_maxrss``), the peak above the loaded level, the plan the engine chose (points per
forward, targets per backward, segments of the shared forward) and the CPU seconds. A budget below one
row is refused with a 413 before any work (``LimitExceeded``), which the table shows too.

``python benchmarks/memory.py [--budgets-gib 1,2,4] [--n-steps 32] [--targets 2] [--prompt-tokens 2000]
[--json-out FILE]`` (a short prompt with many targets, e.g. ``--prompt-tokens 60 --targets 60 --n-steps 8``,
runs the segmented forward)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import _common
from _common import base_parser, table

TEXT = (
    "The history of the printing press begins long before Gutenberg: carved wooden blocks were inked and "
    "pressed onto paper and cloth for centuries, and movable type made of clay and later of metal was used "
    "in East Asia. What changed in fifteenth-century Europe was a combination of an adjustable mould for "
    "casting type, an oil-based ink and a screw press adapted from the wine makers. "
)


def child(budget_bytes: int, n_steps: int, n_targets: int, n_prompt: int, threads: int, model_path: str) -> dict:
    import psutil
    import torch

    from ecco_engine import AttributionParams, EngineLimits, Explainer, ExplainRequest, LimitExceeded
    from ecco_engine.budget import plan
    from ecco_engine.loading import load_model

    torch.set_num_threads(threads)
    model, tokenizer = load_model(model_path)
    # long work on a CPU: no deadline or cost limit in the way of the memory figures
    limits = EngineLimits(
        memory_budget_bytes=budget_bytes, token_budget=10**6, deadline_seconds=7200, max_cost_token_rows=10**9
    )
    explainer = Explainer(model, tokenizer, limits=limits)
    ids = tokenizer.encode(TEXT * 40)[: n_prompt + n_targets]
    prompt = tokenizer.decode(ids[:n_prompt])
    continuation = tokenizer.decode(ids[n_prompt:])
    request = ExplainRequest(
        prompt=prompt,
        continuation=continuation,
        attribution=AttributionParams(methods=("integrated_gradients",), n_steps=n_steps, aggregation="l2"),
    )
    loaded = psutil.Process().memory_info().rss
    out = {"budget_bytes": budget_bytes, "loaded_rss": loaded, "prompt_tokens": n_prompt}
    try:
        ends = list(range(n_prompt, n_prompt + n_targets))
        cut = plan(explainer.memory, n_steps, ends, budget_bytes=budget_bytes, token_budget=10**6)
        out["plan"] = [cut.points_per_forward, cut.targets_per_backward, len(cut.segments)]
    except LimitExceeded:
        out["plan"] = None
    start = time.process_time()
    try:
        result = explainer.explain(request)
        out["ok"] = True
        out["explained"] = len(result.attributions[0].target_positions)
        out["sources"] = int(result.attributions[0].scores.shape[1])
    except LimitExceeded as error:
        out["ok"] = False
        out["error"] = str(error)
    out["cpu_seconds"] = time.process_time() - start
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    out["per_token_bytes"] = explainer.memory.per_token
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--budgets-gib", default="1,2,4")
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--targets", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)  # one budget (GiB), in a fresh process
    args = parser.parse_args()
    if args.child is not None:
        figures = child(
            int(args.child * 2**30), args.n_steps, args.targets, args.prompt_tokens, args.threads, str(args.model)
        )
        print(json.dumps(figures))
        return
    rows, document = [], []
    for gib in (float(b) for b in args.budgets_gib.split(",")):
        command = [sys.executable, __file__, "--child", str(gib), "--n-steps", str(args.n_steps),
                   "--targets", str(args.targets), "--prompt-tokens", str(args.prompt_tokens),
                   "--threads", str(args.threads), "--model", str(args.model)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=_common.REPO_ROOT)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        document.append(figures)
        above = figures["peak_rss"] - figures["loaded_rss"]
        rows.append((
            f"{gib:g} GiB", figures["plan"] or "refused", "ok" if figures["ok"] else "413 (LimitExceeded)",
            figures["loaded_rss"] / 2**30, figures["peak_rss"] / 2**30, above / 2**30,
            above / figures["budget_bytes"], figures["cpu_seconds"],
        ))  # fmt: skip
        print(f"  budget {gib:g} GiB done", flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(document, indent=2))
    kept = document[0]["per_token_bytes"] / 2**10
    print(f"\nIG {args.n_steps} steps, {args.prompt_tokens}-token prompt, {args.targets} explained tokens, "
          f"{args.threads} threads; measured {kept:.0f} KiB kept per row-token")  # fmt: skip
    print(table(
        ["budget", "plan (points/forward, targets/backward, segments)", "result", "RSS loaded GiB", "peak RSS GiB",
         "peak above loaded GiB", "above / budget", "CPU s"],
        rows,
    ))  # fmt: skip


if __name__ == "__main__":
    main()
