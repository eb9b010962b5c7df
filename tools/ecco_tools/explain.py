"""In-process command line: ``python -m ecco_tools.explain --model DIR --prompt TEXT``.

Prints the generated text and, for every generated token, the attribution to each earlier token.
"""

from __future__ import annotations

import argparse
import sys
import time

from ecco_engine.errors import EngineError
from ecco_engine.types import Attribution, AttributionParams, ExplainRequest, GenerationParams, GenerationResult


def format_attribution(generation: GenerationResult, attribution: Attribution, top: int = 0) -> str:
    """A readable table: one line per explained token, its sources by weight (largest first)."""
    lines = [
        f"method={attribution.method} target={attribution.target.value} aggregation={attribution.aggregation.value}"
    ]
    for row, position in enumerate(attribution.target_positions):
        token = generation.tokens[position]
        weights = attribution.scores[row, :position]
        order = sorted(range(position), key=lambda j: -abs(float(weights[j])))
        shown = order[:top] if top else order
        parts = ", ".join(f"{generation.tokens[j].text!r}:{weights[j]:.3f}" for j in shown)
        extra = ""
        if attribution.convergence_deltas is not None:
            extra = f" delta={attribution.convergence_deltas[row]:+.2e}"
        lines.append(f"  [{position}] {token.text!r} (score={attribution.target_scores[row]:.3f}{extra}) <- {parts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ex = argparse.ArgumentParser(prog="python -m ecco_tools.explain", description=__doc__)
    ex.add_argument("--model", required=True, help="model folder (safetensors) or .gguf file")
    ex.add_argument("--prompt", required=True)
    ex.add_argument("--continuation", help="explain this given text instead of generating")
    ex.add_argument("--max-new-tokens", type=int, default=8)
    ex.add_argument("--methods", default="integrated_gradients,grad_x_input")
    ex.add_argument("--target", default="probability")
    ex.add_argument("--baseline", default="eos")
    ex.add_argument("--n-steps", type=int, default=AttributionParams.n_steps)
    ex.add_argument("--top", type=int, default=6, help="sources shown per token (0: all)")
    args = ex.parse_args(argv)

    from ecco_engine.explainer import Explainer
    from ecco_engine.loading import load_model

    start = time.perf_counter()
    model, tokenizer = load_model(args.model)
    print(f"loaded {args.model} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    try:
        request = ExplainRequest(
            prompt=args.prompt,
            continuation=args.continuation,
            generation=GenerationParams(max_new_tokens=args.max_new_tokens),
            attribution=AttributionParams(
                methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                target=args.target,
                baseline=args.baseline,
                n_steps=args.n_steps,
            ),
        )
        explanation = Explainer(model, tokenizer).explain(request)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    generation = explanation.generation
    print(f"prompt:    {''.join(t.text for t in generation.tokens[: generation.prompt_length])!r}")
    print(f"generated: {generation.generated_text!r} ({generation.finish_reason})")
    for attribution in explanation.attributions:
        print(format_attribution(generation, attribution, top=args.top))
    print("timings: " + ", ".join(f"{t.stage}={t.seconds:.2f}s" for t in explanation.timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
