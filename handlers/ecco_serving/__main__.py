"""``python -m ecco_serving archive|serve|stop|status``: build archives, run TorchServe, stop it.

archive [--model DIR] [--name NAME]   build model_store/NAME.mar/ (a directory-format archive)
serve [--name NAME ...]               start TorchServe from .run/serve/ and wait until ready, and the
                                      handler-metrics exporter (--metrics-port, default 8083)
stop                                  stop the TorchServe that `serve` started (only that one) and its exporter
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import server
from .archive import ArchiveSettings, archive_path, build_archive, default_name

DEFAULT_MODEL = Path("model_store/smollm2-135m-instruct")
DEFAULT_STORE = Path("model_store")
DEFAULT_RUN_DIR = Path(".run/serve")
DEFAULT_CONFIG = Path("config.properties")


def _limits(values: list[str]) -> dict[str, int]:
    limits = {}
    for value in values:
        key, _, number = value.partition("=")
        if not number.isdigit():
            raise SystemExit(f"--limit expects NAME=INTEGER, got {value!r}")
        limits[key] = int(number)
    return limits


def _archive(args: argparse.Namespace) -> int:
    settings = ArchiveSettings(
        workers=args.workers,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        response_timeout_s=args.response_timeout,
        job_queue_size=args.job_queue_size,
        limits=_limits(args.limit),
    )
    start = time.perf_counter()
    path = build_archive(args.model, args.store, args.name, settings)
    print(f"built {path} in {time.perf_counter() - start:.1f} s (model name: {args.name or default_name(args.model)})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    names = args.name or [default_name(DEFAULT_MODEL)]
    pid = server.running_pid(Path(args.run_dir).resolve())
    if pid is not None:
        print(f"TorchServe started from {args.run_dir} is already running (pid {pid}); `make stop` stops it.")
        return 0
    models = {}
    for name in names:
        archive = archive_path(args.store, name)
        if not archive.is_dir():
            raise SystemExit(f"no archive {archive}: run `make archive` (python -m ecco_serving archive) first")
        models[name] = archive.name
    start = time.perf_counter()
    try:
        running = server.start(
            args.run_dir, args.config, args.store, models, timeout=args.timeout, metrics_port=args.metrics_port or None
        )
    except server.ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"TorchServe is up in {time.perf_counter() - start:.0f} s, serving {', '.join(models)}")
    print(f"  REST {running.inference_url}   gRPC {running.grpc_target}   metrics {running.metrics_url}/metrics")
    if running.metrics_exporter_url:
        print(f"  handler metrics (all workers) {running.metrics_exporter_url}/metrics; Prometheus: monitoring/")
    print(f"  token: the 'inference' key of {running.key_file}")
    print(f"  logs:  {running.run_dir / 'logs'}")
    print("  stop:  make stop")
    return 0


def _stop(args: argparse.Namespace) -> int:
    stopped = server.stop(args.run_dir)
    print("TorchServe stopped." if stopped else f"no TorchServe started from {args.run_dir} is running.")
    return 0


def _status(args: argparse.Namespace) -> int:
    pid = server.running_pid(Path(args.run_dir).resolve())
    print(f"running (pid {pid}), started from {args.run_dir}" if pid else "not running")
    return 0 if pid else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecco_serving", description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help="TorchServe model store")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="TorchServe's working directory")
    sub = parser.add_subparsers(dest="command", required=True)

    archive = sub.add_parser("archive", help="build a model archive from a local model folder")
    archive.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (config.json, safetensors)")
    archive.add_argument("--name", help="served model name (default: the folder's name)")
    archive.add_argument("--workers", type=int)
    archive.add_argument("--batch-size", type=int)
    archive.add_argument("--max-batch-delay-ms", type=int)
    archive.add_argument("--response-timeout", type=int, help="seconds")
    archive.add_argument(
        "--job-queue-size", type=int, help="requests waiting for a worker before TorchServe refuses (REST 503)"
    )
    archive.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=N",
        help="engine limit (handlers/model-config.yaml: e.g. max_n_steps=128, internals.max_top_k=20), repeatable",
    )
    archive.set_defaults(run=_archive)

    serve = sub.add_parser("serve", help="start TorchServe in the background and wait until the models are ready")
    serve.add_argument("--name", action="append", help="model to serve (repeatable; default: the default model)")
    serve.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    serve.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the models")
    serve.add_argument(
        "--metrics-port", type=int, default=8083, help="handler-metrics exporter on 127.0.0.1 (0: do not start it)"
    )
    serve.set_defaults(run=_serve)

    sub.add_parser("stop", help="stop the TorchServe started by `serve`").set_defaults(run=_stop)
    sub.add_parser("status", help="is the TorchServe started by `serve` running?").set_defaults(run=_status)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
