"""Does sharing pay? Time and peak memory of integrated gradients as the engine groups targets.

The engine groups the targets (sorted by position) and runs each group on the sequence cropped to
its group's last target, with every interpolation step of every target of the group batched
within ``token_budget`` row-tokens per forward (attribution.py ``_groups`` / ``rows_per_forward``).
A small budget means small groups (little wasted length, small batches); a large one means one
group (every target runs at the full length, big batches).

For comparison, two reference computations that are NOT the engine (written here only to measure
whether another grouping would pay; their results are checked against the engine's):

- ``cropped``: one target at a time on its own prefix, all steps in one batch (Captum's
  per-token work, with the unembedding only at the target).
- ``shared forward``: one forward of all steps over the full sequence, the unembedding only at
  the target positions (``logits_to_keep``), then one backward per target (``retain_graph``).
  A causal decoder's position t sees only positions <= t, so the forward serves every target;
  with frozen weights a backward costs about one forward, so this saves most of the repeated
  forwards.

Peak RSS is sampled by a thread (psutil, every 5 ms) during each run, relative to the RSS just
before it. Each variant runs ``--rounds`` times in alternating order; the minimum wall and CPU
times are kept (on a busy shared machine, CPU time with ``--threads 1`` is the steadier figure).
Run from the repository root: ``python benchmarks/sharing.py [--json]``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

import _common  # noqa: F401  (sets sys.path before the engine is imported)
import numpy as np
import psutil
import torch
from _common import base_parser, environment, json_text, load, table
from captum.attr._utils.approximation_methods import approximation_parameters

from ecco_engine.attribution import _groups, attribute_tokens, baseline_embeddings
from ecco_engine.explainer import Explainer
from ecco_engine.targets import target_function
from ecco_engine.types import AttributionParams, ExplainRequest, GenerationParams, TargetKind

PROMPT = "The printing press was invented in Germany around the year"  # 10 tokens for SmolLM2
BUDGETS = (256, 1024, 2048, 8192)  # 16 would give one target per group and one row per forward


class PeakRss:
    """Context manager: peak RSS (bytes) above the RSS at entry, sampled by a thread."""

    def __init__(self, interval_seconds: float = 0.005) -> None:
        self.process = psutil.Process()
        self.interval = interval_seconds
        self.peak_bytes = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.process.memory_info().rss - self.start_bytes)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.start_bytes = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.process.memory_info().rss - self.start_bytes)


def ig_weights(n_steps: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    step_sizes, alphas = approximation_parameters(method)
    return torch.tensor(alphas(n_steps)), torch.tensor(step_sizes(n_steps))


def reference_cropped(model, x, xb, positions, token_ids, kind, n_steps, method) -> torch.Tensor:
    """One target at a time on its own prefix; all steps in one batch. -> (T, L) signed sums."""
    alphas, weights = ig_weights(n_steps, method)
    out = torch.zeros(len(positions), x.shape[0], dtype=torch.float64)
    for i, (pos, tok) in enumerate(zip(positions, token_ids, strict=True)):
        diff = x[:pos] - xb[:pos]
        scaled = (xb[:pos] + alphas.view(-1, 1, 1).to(x.dtype) * diff).requires_grad_()
        logits = model(inputs_embeds=scaled, use_cache=False, logits_to_keep=1).logits[:, -1].float()
        f = target_function(kind, logits, torch.full((n_steps,), tok), torch.zeros(n_steps, dtype=torch.long))
        (grad,) = torch.autograd.grad((f * weights.to(f.dtype)).sum(), scaled)
        out[i, :pos] = (grad.sum(0) * diff).sum(-1).double()
    return out


def reference_shared(model, x, xb, positions, token_ids, kind, n_steps, method) -> torch.Tensor:
    """One forward of all steps over the full sequence, one backward per target. -> (T, L)."""
    alphas, weights = ig_weights(n_steps, method)
    length = max(positions)
    diff = x[:length] - xb[:length]
    scaled = (xb[:length] + alphas.view(-1, 1, 1).to(x.dtype) * diff).requires_grad_()
    keep = torch.tensor([p - 1 for p in positions])
    logits = model(inputs_embeds=scaled, use_cache=False, logits_to_keep=keep).logits.float()  # (S, T, V)
    out = torch.zeros(len(positions), x.shape[0], dtype=torch.float64)
    for i, tok in enumerate(token_ids):
        f = target_function(kind, logits[:, i], torch.full((n_steps,), tok), torch.zeros(n_steps, dtype=torch.long))
        (grad,) = torch.autograd.grad((f * weights.to(f.dtype)).sum(), scaled, retain_graph=i + 1 < len(token_ids))
        out[i, :length] = (grad.sum(0) * diff).sum(-1).double()
    return out


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, float, int, np.ndarray]:
    """``(wall seconds, process CPU seconds, peak RSS bytes above the start, result)``."""
    with PeakRss() as rss:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, rss.peak_bytes, result


def fixed_mmap_threshold() -> None:
    """Re-run this script with glibc's mmap threshold fixed at 64 KiB, so that freed tensors go back
    to the OS and each run's peak RSS is not hidden by memory an earlier run left in the heap."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform.startswith("linux"):
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
        os.execv(sys.executable, [sys.executable, *sys.argv])


def main() -> None:
    fixed_mmap_threshold()
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--target", default="probability", choices=[k.value for k in TargetKind][:3])
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="comma-separated token budgets")
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant, alternating order (min is kept)")
    parser.add_argument("--no-reference", action="store_true", help="skip the two reference computations")
    args = parser.parse_args()
    budgets = tuple(int(b) for b in args.budgets.split(","))

    model, tokenizer, load_seconds = load(args.model, args.threads)
    params = AttributionParams(
        methods=("integrated_gradients",), target=args.target, n_steps=args.n_steps, baseline="eos", aggregation="sum"
    )
    request = ExplainRequest(
        prompt=args.prompt, generation=GenerationParams(max_new_tokens=args.max_new_tokens), attribution=params
    )
    explainer = Explainer(model, tokenizer)
    generation = explainer.generate(request)
    ids = [t.id for t in generation.tokens]
    positions = tuple(range(generation.prompt_length, len(ids)))
    targets = [ids[p] for p in positions]
    layout = explainer.layout
    x = layout.embedding(torch.tensor([ids]))[0].detach()
    xb = baseline_embeddings(layout, tokenizer, "eos", len(ids))[0]
    kind = TargetKind(args.target)

    target_set = explainer.targets(request, generation)

    def engine(budget: int) -> np.ndarray:
        """What ``Explainer.explain`` runs for one method, with ``EngineLimits.token_budget = budget``."""
        attribution = attribute_tokens(
            model, layout, tokenizer, ids, target_set, params, "integrated_gradients", token_budget=budget
        )
        return attribution.scores.astype(np.float64)

    variants: dict[str, Callable[[], np.ndarray]] = {}
    for b in budgets:
        variants[f"engine, token_budget={b}"] = lambda b=b: engine(b)
    if not args.no_reference:
        common = (model, x, xb, positions, targets, kind, args.n_steps, params.integration.value)
        n = len(ids) - 1
        variants["reference: cropped, one target at a time"] = lambda: reference_cropped(*common).numpy()[:, :n]
        variants["reference: shared forward, backward per target"] = lambda: reference_shared(*common).numpy()[:, :n]

    seconds: dict[str, list[float]] = {name: [] for name in variants}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, list[int]] = {name: [] for name in variants}
    results: dict[str, np.ndarray] = {}
    names = list(variants)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            with torch.enable_grad():
                wall, cpu, peak, results[name] = timed(variants[name])
            seconds[name].append(wall)
            cpu_seconds[name].append(cpu)
            peaks[name].append(peak)
            if not args.json:
                print(
                    f"  round {r + 1}: {name}: {wall:.2f}s wall, {cpu:.2f}s CPU, peak +{peak / 2**20:.0f} MiB",
                    flush=True,
                )

    reference = results[names[0]]
    scale = float(np.abs(reference).max())
    rows = []
    document_rows = []
    for name in names:
        best = min(seconds[name])
        best_cpu = min(cpu_seconds[name])
        default = "engine, token_budget=2048"
        budget = int(name.split("=")[1]) if name.startswith("engine") else None
        groups = _groups(positions, budget) if budget else None
        row_tokens = (
            sum(len(g) * max(positions[i] for i in g) for g in groups) * args.n_steps
            if groups
            else (sum(positions) if "cropped" in name else max(positions)) * args.n_steps
        )
        diff = float(np.abs(results[name] - reference).max()) / scale
        entry = {
            "variant": name,
            "seconds_min": best,
            "seconds_all": seconds[name],
            "cpu_seconds_min": best_cpu,
            "cpu_seconds_all": cpu_seconds[name],
            "speed_vs_default_wall": min(seconds[default]) / best if default in seconds else None,
            "speed_vs_default_cpu": min(cpu_seconds[default]) / best_cpu if default in seconds else None,
            "peak_rss_mib": max(peaks[name]) / 2**20,
            "groups": len(groups) if groups else None,
            "forward_row_tokens": row_tokens,
            "max_diff_rel_to_first": diff,
        }
        document_rows.append(entry)
        rows.append((name, best, best_cpu, entry["speed_vs_default_wall"] or float("nan"),
                     entry["speed_vs_default_cpu"] or float("nan"), entry["peak_rss_mib"], entry["groups"] or "-",
                     row_tokens, diff))  # fmt: skip
    document = {
        "environment": environment(args.threads),
        "prompt": args.prompt,
        "prompt_tokens": generation.prompt_length,
        "generated_tokens": len(positions),
        "n_steps": args.n_steps,
        "target": args.target,
        "rounds": args.rounds,
        "variants": document_rows,
        "load_seconds": load_seconds,
    }
    if args.json_out:
        args.json_out.write_text(json_text(document))
    if args.json:
        print(json_text(document))
        return
    print(f"\nenvironment {document['environment']}")
    print(f"prompt {args.prompt!r} ({generation.prompt_length} tokens) + {len(positions)} generated; IG "
          f"{args.n_steps} steps, target {args.target}, eos baseline; min of {args.rounds} rounds\n")  # fmt: skip
    headers = ["variant", "wall s", "CPU s", "speed vs 2048 (wall)", "speed vs 2048 (CPU)", "peak RSS MiB",
               "groups", "forward row-tokens", "max diff / max |first|"]  # fmt: skip
    print(table(headers, rows))


if __name__ == "__main__":
    main()
