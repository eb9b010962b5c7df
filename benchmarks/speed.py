"""The engine against the strongest simple alternative, a plain per-token Captum loop, in one run.

Work per prompt: the default model, greedy generation of ``--max-new-tokens`` tokens, then every
generated token attributed to every earlier token with integrated gradients (``--n-steps``
Gauss-Legendre steps, eos-token baseline) and gradient x input; target = log-probability of the
token, signed sum over the embedding dimension. Two prompts: 10 and 40 tokens.

Sides, all on the same generated ids, in one process, alternating order per round:

- ``engine``: ``attribute_tokens`` (what ``Explainer.explain`` runs), float32, and (IG) bfloat16;
- ``loop``: per generated token, one ``IntegratedGradients`` / ``InputXGradient`` call on the prefix's
  ``inputs_embeds``, all steps in one batch, the model asked for the last position's logits only
  (``logits_to_keep=1``) -- the way Ecco does it, with the one easy optimization a user would make;
- ``llm_attr`` (``--llm-attr``): Captum's ``LLMGradientAttribution`` over ``LayerIntegratedGradients`` /
  ``LayerGradientXActivation``, one call per generated token with the prefix as its prompt.

Printed: CPU seconds (process, all threads; the steadier measure on a shared machine) and wall
seconds per side, the ratio loop / engine (> 1: the engine is faster), the maximum difference to
the loop relative to each row's maximum, and for bfloat16 the per-row Spearman rank correlation with
the engine's float32 rows and the maximum relative difference.

``python benchmarks/speed.py [--threads 2] [--rounds 1] [--llm-attr] [--json-out FILE]``
"""

from __future__ import annotations

import time

import _common  # noqa: F401  (sets sys.path before the engine is imported)
import numpy as np
import torch
from _common import base_parser, environment, json_text, load, table
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    LLMGradientAttribution,
    TextTokenInput,
)
from scipy.stats import spearmanr

from ecco_engine.attribution import attribute_tokens
from ecco_engine.explainer import Explainer
from ecco_engine.targets import target_function
from ecco_engine.types import AttributionParams, ExplainRequest, GenerationParams, TargetKind

PROMPTS = {
    10: "The printing press was invented in Germany around the year",
    40: (
        "In the spring of that year the river rose higher than anyone in the valley could remember, and the"
        " farmers who had planted early watched their fields disappear under brown water, so the mayor of the"
        " town decided to"
    ),
}


class Clock:
    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def attribute_generated(explainer, generation, method: str, *, n_steps: int, aggregation="sum", precision="float32"):
    """The engine's attribution of every generated token, as ``Explainer.explain`` runs it: eos baseline,
    log-probability target."""
    params = AttributionParams(
        methods=(method,), target="log_probability", n_steps=n_steps, baseline="eos", aggregation=aggregation,
        precision=precision,
    )  # fmt: skip
    targets = explainer.targets(ExplainRequest(prompt="x", attribution=params), generation)
    ids = [t.id for t in generation.tokens]
    return attribute_tokens(
        explainer.model, explainer.layout, explainer.tokenizer, ids, targets, params, method,
        memory=explainer.memory, budget=explainer.budget,
    )  # fmt: skip


def loop_rows(model, ids: list[int], prompt_length: int, method: str, baseline_id: int, n_steps: int):
    """One Captum call per generated token on the prefix embeddings: rows ``(n_new, len(ids) - 1)``."""
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    emb = embedding(torch.tensor([ids], device=device)).detach()
    rows = []
    for pos in range(prompt_length, len(ids)):
        token = torch.tensor([ids[pos]], device=device)

        def forward(x, token=token):
            logits = model(inputs_embeds=x, use_cache=False, logits_to_keep=1).logits[:, -1, :]
            return target_function(TargetKind.LOG_PROBABILITY, logits, token.expand(x.shape[0]), token)

        prefix = emb[:, :pos].clone()
        if method == "integrated_gradients":
            base = embedding.weight[baseline_id].detach().expand_as(prefix).clone()
            attr = IntegratedGradients(forward).attribute(
                prefix, baselines=base, n_steps=n_steps, method="gausslegendre"
            )
        else:
            attr = InputXGradient(forward).attribute(prefix)
        row = attr[0].detach().double().sum(-1).cpu().numpy()
        rows.append(np.pad(row, (0, len(ids) - 1 - pos)))
    return np.stack(rows)


def llm_attr_rows(model, tokenizer, ids: list[int], prompt_length: int, method: str, baseline_id: int, n_steps: int):
    """Captum's LLMGradientAttribution, one call per generated token (prefix as the prompt)."""
    embeddings = model.get_input_embeddings()
    if method == "integrated_gradients":
        wrapper = LLMGradientAttribution(LayerIntegratedGradients(model, embeddings), tokenizer)
        kwargs = {"n_steps": n_steps, "method": "gausslegendre"}
    else:
        wrapper = LLMGradientAttribution(LayerGradientXActivation(model, embeddings), tokenizer)
        kwargs = {}
    rows = []
    for pos in range(prompt_length, len(ids)):
        inp = TextTokenInput(tokenizer.decode(ids[:pos]), tokenizer, baselines=baseline_id)
        tensor = torch.tensor([ids[:pos]])  # the same ids on every side, whatever re-tokenizing gives
        inp.inp_tensor = inp.itp_tensor = tensor
        inp.values = tokenizer.convert_ids_to_tokens(ids[:pos])
        inp.n_itp_features = pos
        result = wrapper.attribute(inp, target=torch.tensor([ids[pos]]), **kwargs)
        rows.append(np.pad(result.token_attr[0].detach().double().numpy(), (0, len(ids) - 1 - pos)))
    return np.stack(rows)


def gemm_throughput(device: str, hidden: int, intermediate: int, rows: int = 1792) -> dict[str, float]:
    """GFLOP/s of the model's MLP-sized matrix product per dtype on ``device``: what reduced precision can gain
    here at all (a CPU without AMX may run bfloat16 slower than float32)."""
    out = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        a = torch.randn(rows, hidden, device=device).to(dtype)
        w = torch.randn(intermediate, hidden, device=device).to(dtype)
        for _ in range(3):
            torch.nn.functional.linear(a, w)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start, n = time.perf_counter(), 20
        for _ in range(n):
            torch.nn.functional.linear(a, w)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out[str(dtype).removeprefix("torch.")] = (
            2 * rows * hidden * intermediate * n / (time.perf_counter() - start) / 1e9
        )
    return out


def row_relative_diff(ours: np.ndarray, ref: np.ndarray) -> float:
    scale = np.maximum(np.abs(ref).max(axis=1, keepdims=True), 1e-30)
    return float((np.abs(ours - ref) / scale).max())


def rank_correlations(ours: np.ndarray, ref: np.ndarray, prompt_length: int) -> list[float]:
    out = []
    for k in range(ref.shape[0]):
        n = prompt_length + k
        out.append(float(spearmanr(ours[k, :n], ref[k, :n]).statistic))
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--n-steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompts", default="10,40", help="which prompts (by token count): 10, 40")
    parser.add_argument("--llm-attr", action="store_true", help="also time Captum's LLMGradientAttribution")
    parser.add_argument(
        "--sides", default="", help="only the jobs whose 'method | side' contains one of these (comma-separated)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the model and every side run there)")
    args = parser.parse_args()

    model, tokenizer, _ = load(args.model, args.threads)
    model.to(args.device)
    explainer = Explainer(model, tokenizer)
    baseline_id = int(tokenizer.eos_token_id)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    document: dict = {"environment": environment(args.threads), "device": args.device, "prompts": {}}
    config = model.config
    gemm = gemm_throughput(
        args.device, config.hidden_size, getattr(config, "intermediate_size", 4 * config.hidden_size)
    )
    document["gemm_gflops"] = gemm
    print("matrix product GFLOP/s by dtype:", ", ".join(f"{k} {v:.0f}" for k, v in gemm.items()), flush=True)
    summary = []
    for n_prompt in (int(p) for p in args.prompts.split(",")):
        request = ExplainRequest(
            prompt=PROMPTS[n_prompt], generation=GenerationParams(max_new_tokens=args.max_new_tokens)
        )
        generation = explainer.generate(request)
        ids = [t.id for t in generation.tokens]
        P = generation.prompt_length
        sides: dict[str, dict[str, float]] = {}
        rows: dict[str, np.ndarray] = {}

        def engine(method: str, precision: str, generation=generation):
            sync()
            result = attribute_generated(explainer, generation, method, n_steps=args.n_steps, precision=precision)
            sync()
            return result.scores.astype(np.float64)

        jobs = {
            ("integrated_gradients", "engine float32"): lambda: engine("integrated_gradients", "float32"),
            ("integrated_gradients", "engine bfloat16"): lambda: engine("integrated_gradients", "bfloat16"),
            ("integrated_gradients", "loop"): lambda ids=ids, P=P: loop_rows(
                model, ids, P, "integrated_gradients", baseline_id, args.n_steps
            ),
            ("grad_x_input", "engine float32"): lambda: engine("grad_x_input", "float32"),
            ("grad_x_input", "loop"): lambda ids=ids, P=P: loop_rows(
                model, ids, P, "grad_x_input", baseline_id, args.n_steps
            ),
        }  # fmt: skip
        if args.llm_attr:
            for method in ("integrated_gradients", "grad_x_input"):
                jobs[(method, "llm_attr")] = lambda m=method, ids=ids, P=P: llm_attr_rows(
                    model, tokenizer, ids, P, m, baseline_id, args.n_steps
                )
        if args.sides:
            wanted = args.sides.split(",")
            jobs = {key: job for key, job in jobs.items() if any(w in f"{key[0]} | {key[1]}" for w in wanted)}
        for r in range(args.rounds):
            order = list(jobs) if r % 2 == 0 else list(reversed(jobs))
            for key in order:
                with Clock() as clock:
                    result = jobs[key]()
                best = sides.setdefault(f"{key[0]} | {key[1]}", {"cpu": float("inf"), "wall": float("inf")})
                best["cpu"], best["wall"] = min(best["cpu"], clock.cpu), min(best["wall"], clock.wall)
                rows[f"{key[0]} | {key[1]}"] = result
                print(f"  prompt {n_prompt}: {key[0]} {key[1]}: {clock.cpu:.1f} CPU s, {clock.wall:.1f} s", flush=True)
        figures = {}
        for method in ("integrated_gradients", "grad_x_input"):
            if f"{method} | loop" not in sides:
                continue
            loop = sides[f"{method} | loop"]
            ref = rows[f"{method} | loop"]
            for side in [s for s in sides if s.startswith(method) and not s.endswith("| loop")]:
                ours = rows[side]
                entry = {
                    "cpu_s": sides[side]["cpu"], "wall_s": sides[side]["wall"],
                    "loop_cpu_s": loop["cpu"], "loop_wall_s": loop["wall"],
                    "speedup_cpu": loop["cpu"] / sides[side]["cpu"], "speedup_wall": loop["wall"] / sides[side]["wall"],
                    "max_row_rel_diff_to_loop": row_relative_diff(ours, ref),
                }  # fmt: skip
                if side.endswith("bfloat16") and f"{method} | engine float32" in rows:
                    fp32 = rows[f"{method} | engine float32"]
                    corr = rank_correlations(ours, fp32, P)
                    entry["rank_corr_to_float32_median"] = float(np.median(corr))
                    entry["rank_corr_to_float32_min"] = float(np.min(corr))
                    entry["max_row_rel_diff_to_float32"] = row_relative_diff(ours, fp32)
                figures[side] = entry
                summary.append((
                    n_prompt, side, entry["cpu_s"], entry["loop_cpu_s"], entry["speedup_cpu"], entry["speedup_wall"],
                    entry["max_row_rel_diff_to_loop"], entry.get("rank_corr_to_float32_median", ""),
                    entry.get("max_row_rel_diff_to_float32", ""),
                ))  # fmt: skip
        document["prompts"][n_prompt] = {
            "prompt_tokens": P, "generated_tokens": len(ids) - P, "generated_text": generation.generated_text,
            "sides": figures,
        }  # fmt: skip
    if args.json_out:
        args.json_out.write_text(json_text(document))
    print(f"\nenvironment {document['environment']}, device {args.device}, {args.max_new_tokens} generated tokens,"
          f" IG {args.n_steps} Gauss-Legendre steps, eos baseline, min of {args.rounds} round(s)")  # fmt: skip
    print(table(
        ["prompt tokens", "side", "CPU s", "loop CPU s", "speed-up CPU", "speed-up wall", "max row diff / row max",
         "bf16 rank corr (median)", "bf16 max row diff"],
        summary,
    ))  # fmt: skip
    print("speed-up = plain per-token Captum loop / side (> 1: faster than the loop)")
    print("matrix product GFLOP/s by dtype:", ", ".join(f"{k} {v:.0f}" for k, v in gemm.items()))


if __name__ == "__main__":
    main()
