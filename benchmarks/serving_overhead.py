"""The serving overhead: one request's latency in-process, over REST and over gRPC, in the same run.

Starts a real TorchServe for the default model archive (built into a temporary model store, the
weights hard-linked; free ports; a private run directory, so a TorchServe someone else runs is never
touched), loads the same model folder in this process with ``ecco_engine``, and times the same
request on three paths:

- ``in-process``: ``Explainer.explain`` / ``Explainer.generate`` on the engine request the codec
  decodes from the very bytes the gRPC client sends (decoding is outside the timed call);
- ``REST``: ``EccoClient(url=...)`` (proto3 JSON over HTTP, ``/explanations`` / ``/predictions``);
- ``gRPC``: ``EccoClient(grpc=...)`` (serialized protobuf through ``InferenceAPIsService.Predictions``).

Both sides run torch with ``--threads`` intra-op threads (default 1; the archive's
``handler.torch_threads`` is set to it, and ``OMP_NUM_THREADS`` for TorchServe's workers), so the
engine does the same work on the same number of cores. Each request is sent once per path untimed
(warm-up), then ``--rounds`` times per path, the three paths in a rotating order per round (drift on
a shared machine then hits every path alike). Reported: median and min wall seconds per path, the
ratios REST / in-process and gRPC / in-process and the absolute differences (medians), and the
engine seconds the worker itself reports (median of its engine stage timings) and the median per call
of wall minus engine seconds: the serving overhead proper (frontend, queueing, transport, codec on both
ends), which, unlike the difference of medians, does not drown in the run-to-run noise of the compute
on a busy machine. Every result must agree with the in-process one: token ids exactly,
attribution matrices within 1e-5 relative (max |difference| / max |in-process score|).

Run from the repository root (needs ``make model``): ``python benchmarks/serving_overhead.py``
(``--model DIR`` for any other local folder). The tests assert no latency: the figures are here.
TorchServe is stopped at the end, also after an error, and every process it started is checked gone.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _common  # noqa: F401  (sets sys.path before the engine is imported)
import numpy as np
import psutil
import yaml
from _common import REPO_ROOT, base_parser, environment, fmt, json_text, load, table

sys.path.insert(0, str(REPO_ROOT / "clients"))

from ecco_client import EccoClient
from ecco_client.build import build_request
from ecco_codec import decode_request
from ecco_engine import Explainer
from ecco_serving.archive import build_archive
from ecco_serving.server import Ports, config_with_ports, free_ports, start, stop

NAME = "smollm2-135m-instruct"
PATHS = ("in-process", "REST", "gRPC")
#: the two requests (keyword arguments of ``ecco_client.build.build_request``)
REQUESTS = {
    "explain": (
        "explain",
        {
            "prompt": "The capital of France is",
            "max_new_tokens": 4,
            "do_sample": False,
            "methods": ["integrated_gradients", "grad_x_input"],
            "n_steps": 16,
        },
    ),
    "generate": ("generate", {"prompt": "The capital of France is", "max_new_tokens": 8, "do_sample": False}),
}
RELATIVE_TOLERANCE = 1e-5
#: stage timings the handler adds around the engine's (codec work in the worker)
CODEC_STAGES = ("decode", "encode")


@dataclass(frozen=True)
class Outcome:
    """One call: wall seconds, token ids, ``{method: scores (n_targets, n_sources)}``, engine seconds."""

    seconds: float
    token_ids: tuple[int, ...]
    scores: dict[str, np.ndarray]
    engine_seconds: float


def engine_seconds(timings) -> float:
    return sum(t.seconds for t in timings if t.stage not in CODEC_STAGES)


def in_process_call(explainer: Explainer, kind: str, options: dict) -> Callable[[], Outcome]:
    body = build_request(kind, **options).SerializeToString()  # what the gRPC client sends
    request = decode_request(body, content_type="application/x-protobuf").request

    def call() -> Outcome:
        start_time = time.perf_counter()
        if kind == "explain":
            explanation = explainer.explain(request)
            seconds = time.perf_counter() - start_time
            generation, timings = explanation.generation, explanation.timings
            scores = {a.method: np.asarray(a.scores, dtype=np.float64) for a in explanation.attributions}
        else:
            generation = explainer.generate(request)
            seconds = time.perf_counter() - start_time
            timings, scores = generation.timings, {}
        return Outcome(seconds, tuple(t.id for t in generation.tokens), scores, engine_seconds(timings))

    return call


def served_call(client: EccoClient, kind: str, options: dict) -> Callable[[], Outcome]:
    def call() -> Outcome:
        start_time = time.perf_counter()
        result = client.explain(**options) if kind == "explain" else client.generate(**options)
        seconds = time.perf_counter() - start_time
        scores = {}
        if kind == "explain":
            scores = {a.method: np.asarray(a.scores_array(), dtype=np.float64) for a in result.attributions}
        return Outcome(seconds, tuple(t.id for t in result.tokens), scores, engine_seconds(result.timings))

    return call


def disagreement(reference: Outcome, other: Outcome) -> str | None:
    """Why ``other`` is not the same result as ``reference`` (None if it is)."""
    if other.token_ids != reference.token_ids:
        return f"token ids differ: {other.token_ids} vs {reference.token_ids}"
    if sorted(other.scores) != sorted(reference.scores):
        return f"methods differ: {sorted(other.scores)} vs {sorted(reference.scores)}"
    for method, expected in reference.scores.items():
        got = other.scores[method]
        if got.shape != expected.shape:
            return f"{method}: shape {got.shape} vs {expected.shape}"
        scale = float(np.max(np.abs(expected))) or 1.0
        error = float(np.max(np.abs(got - expected), initial=0.0)) / scale
        if not error <= RELATIVE_TOLERANCE:
            return f"{method}: relative difference {error:.2e} > {RELATIVE_TOLERANCE:.0e}"
    return None


def measure(calls: dict[str, Callable[[], Outcome]], rounds: int) -> tuple[dict[str, list[Outcome]], list[str]]:
    """Warm up every path, then ``rounds`` rounds in rotating order; also the disagreements found."""
    outcomes: dict[str, list[Outcome]] = {path: [] for path in PATHS}
    reference = calls["in-process"]()  # warm-up (untimed), the reference result
    problems = []
    for path in PATHS[1:]:
        if reason := disagreement(reference, calls[path]()):
            problems.append(f"{path} warm-up: {reason}")
    for r in range(rounds):
        for path in PATHS[r % len(PATHS) :] + PATHS[: r % len(PATHS)]:
            outcome = calls[path]()
            outcomes[path].append(outcome)
            if reason := disagreement(reference, outcome):
                problems.append(f"{path} round {r + 1}: {reason}")
    return outcomes, problems


def summary_rows(outcomes: dict[str, list[Outcome]]) -> list[list[object]]:
    local = statistics.median(o.seconds for o in outcomes["in-process"])
    rows: list[list[object]] = []
    for path in PATHS:
        seconds = [o.seconds for o in outcomes[path]]
        median = statistics.median(seconds)
        engine = statistics.median(o.engine_seconds for o in outcomes[path])
        outside = statistics.median(o.seconds - o.engine_seconds for o in outcomes[path])
        ratio = "1" if path == "in-process" else f"{median / local:.3f}"
        diff = "0" if path == "in-process" else f"{median - local:+.3f}"
        rows.append([path, f"{median:.3f}", f"{min(seconds):.3f}", ratio, diff, f"{engine:.3f}", f"{outside:.3f}"])
    return rows


def prepare_archive(store: Path, model_dir: Path, threads: int) -> Path:
    """The default archive (its default settings) with ``handler.torch_threads = threads``."""
    archive = build_archive(model_dir, store, NAME)
    config_file = archive / "model-config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["handler"]["torch_threads"] = threads
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return archive


def main() -> int:
    parser = base_parser(__doc__.split("\n")[0])
    parser.set_defaults(threads=1)
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per path and request (default: 3)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by TorchServe and its workers
    if not (args.model / "model.safetensors").is_file():
        sys.exit(f"no model at {args.model}: run `make model` first (or pass --model)")

    load_before = os.getloadavg()
    document: dict[str, object] = {"environment": environment(args.threads), "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="ecco-serving-overhead-") as tmp:
        store, run_dir = Path(tmp) / "store", Path(tmp) / "run"
        run_dir.mkdir()
        started = time.perf_counter()
        archive = prepare_archive(store, args.model, args.threads)
        config = config_with_ports(
            REPO_ROOT / "config.properties", run_dir / "config.properties", Ports(*free_ports(6))
        )
        family: list[psutil.Process] = []
        results: dict[str, object] = {}
        problems_all: list[str] = []
        try:
            server = start(run_dir, config, store, {NAME: archive.name}, timeout=600)
            family = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
            print(f"TorchServe up in {time.perf_counter() - started:.1f} s (pids {[p.pid for p in family]})")
            model, tokenizer, load_seconds = load(args.model, args.threads)
            explainer = Explainer(model, tokenizer)
            print(f"in-process model loaded in {load_seconds:.1f} s; threads {args.threads} on both sides")
            rest = EccoClient(url=server.inference_url, model=NAME, key_file=server.key_file)
            grpc = EccoClient(grpc=server.grpc_target, model=NAME, key_file=server.key_file)
            with rest, grpc:
                for label, (kind, options) in REQUESTS.items():
                    calls = {
                        "in-process": in_process_call(explainer, kind, options),
                        "REST": served_call(rest, kind, options),
                        "gRPC": served_call(grpc, kind, options),
                    }
                    outcomes, problems = measure(calls, args.rounds)
                    problems_all += [f"{label}: {p}" for p in problems]
                    rows = summary_rows(outcomes)
                    results[label] = {
                        "request": {"kind": kind, **options},
                        "seconds": {path: [o.seconds for o in outcomes[path]] for path in PATHS},
                        "engine_seconds": {path: [o.engine_seconds for o in outcomes[path]] for path in PATHS},
                        "table": rows,
                        "same_result": not problems,
                    }
                    print(f"\n{label}: {kind} {options}")
                    headers = ["path", "median s", "min s", "/ in-process", "diff s", "engine s", "wall - engine s"]
                    print(table(headers, rows))
                    print("results equal (ids exact, attributions <= 1e-5 rel.):", "yes" if not problems else "NO")
        finally:
            stop(run_dir)
            alive = [p.pid for p in family if still_running(p)]
            print(f"\nTorchServe stopped; processes it started still running: {alive or 'none'}")
    document["results"] = results
    document["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(f"load average (1/5/15 min) before: {fmt_load(load_before)}, after: {fmt_load(os.getloadavg())}")
    for problem in problems_all:
        print("MISMATCH", problem)
    if args.json or args.json_out:
        text = json_text(document)
        if args.json:
            print(text)
        if args.json_out:
            args.json_out.write_text(text)
    return 1 if problems_all or alive else 0


def still_running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def fmt_load(values: tuple[float, ...]) -> str:
    return " ".join(fmt(float(v), 2) for v in values)


if __name__ == "__main__":
    sys.exit(main())
