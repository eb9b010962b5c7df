"""Shared set-up for the benchmark scripts: import path, model loading, threads, tables.

Each script runs as ``python benchmarks/NAME.py`` from the repository root (this folder is then
first on ``sys.path``, so ``import _common`` works); the engine package is found in ``handlers/``
whether or not the project is installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HANDLERS = REPO_ROOT / "handlers"
if str(HANDLERS) not in sys.path:
    sys.path.insert(0, str(HANDLERS))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL = REPO_ROOT / "model_store" / "smollm2-135m-instruct"


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--json-out", type=Path, help="also write the JSON document to this file")
    return parser


def load(model_path: Path, threads: int):
    """``(model, tokenizer, load_seconds)`` with torch limited to ``threads`` threads."""
    import torch

    from ecco_engine.loading import load_model

    torch.set_num_threads(threads)
    if not (model_path / "config.json").exists() and model_path.suffix != ".gguf":
        sys.exit(f"no model at {model_path}: run `make model` first (or pass --model)")
    start = time.perf_counter()
    model, tokenizer = load_model(model_path)
    return model, tokenizer, time.perf_counter() - start


def fmt(value: object, digits: int = 3) -> str:
    """A table cell: floats in compact scientific or fixed notation, NaN as 'nan'."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{digits + 1}g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (reads as plain text too)."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join(lines)


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def json_text(document: dict) -> str:
    """The document as JSON (NaN as null, infinities as strings)."""
    return json.dumps(_jsonable(document), indent=2)


def environment(threads: int) -> dict[str, object]:
    import captum
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "captum": captum.__version__,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
