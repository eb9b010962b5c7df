"""A private TorchServe for the load scripts (concurrency, soak): loopback only, stopped on exit.

``serving(options)`` builds the archive into a temporary model store (the default model, any model
folder, or ``--tiny``: a random tiny Llama built from ``tests/tiny_models.py``, seconds to load), starts
TorchServe from a temporary run directory on free 127.0.0.1 ports, and yields a ``Session``; on exit
TorchServe and every process it started are stopped and checked gone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from _common import DEFAULT_MODEL, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "clients"))

from ecco_client import EccoClient
from ecco_serving.archive import ArchiveSettings, build_archive
from ecco_serving.server import Ports, Server, config_with_ports, free_ports, start, stop

NAME = "served"


@dataclass(frozen=True)
class Session:
    """A started TorchServe serving one model as ``NAME``."""

    server: Server
    token: str

    def client(self, transport: str, timeout: float) -> EccoClient:
        """An ``EccoClient`` over "rest" or "grpc" with the inference token."""
        where = {"url": self.server.inference_url} if transport == "rest" else {"grpc": self.server.grpc_target}
        return EccoClient(**where, model=NAME, token=self.token, timeout=timeout)

    def worker_pids(self) -> list[int]:
        """The Python worker processes (children of the frontend running the model service)."""
        children = psutil.Process(self.server.pid).children(recursive=True)
        return sorted(p.pid for p in children if "model_service_worker" in " ".join(p.cmdline()))


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: %(default)s)")
    parser.add_argument("--tiny", action="store_true", help="serve a random tiny Llama instead (no download)")
    parser.add_argument("--workers", type=int, default=2, help="TorchServe workers (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default: %(default)s)")
    parser.add_argument(
        "--job-queue-size", type=int, default=None, help="TorchServe's queue per model (default: the archive's)"
    )


def _tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from tiny_models import tiny_model, tiny_tokenizer

    tiny_model("llama").save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@contextmanager
def serving(args: argparse.Namespace, limits: dict[str, object] | None = None) -> Iterator[Session]:
    """TorchServe with the model of ``args`` (see ``add_server_options``) as ``NAME``; stopped on exit."""
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by TorchServe's workers
    with tempfile.TemporaryDirectory(prefix="ecco-load-") as tmp:
        root = Path(tmp)
        model_dir = _tiny_model(root / "tiny") if args.tiny else args.model
        if not (model_dir / "config.json").is_file():
            sys.exit(f"no model at {model_dir}: run `make model` first (or pass --model / --tiny)")
        settings = ArchiveSettings(workers=args.workers, job_queue_size=args.job_queue_size, limits=limits)
        build_archive(model_dir, root / "store", NAME, settings)
        run_dir = root / "run"
        run_dir.mkdir()
        config = config_with_ports(
            REPO_ROOT / "config.properties", run_dir / "config.properties", Ports(*free_ports(6))
        )
        started = time.perf_counter()
        server = start(run_dir, config, root / "store", {NAME: f"{NAME}.mar"}, timeout=600)
        family = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        print(f"TorchServe up with {args.workers} worker(s) in {time.perf_counter() - started:.1f} s", flush=True)
        try:
            yield Session(server, server.keys()["inference"])
        finally:
            stop(run_dir)
            alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if alive:
                raise RuntimeError(f"processes of the benchmark's TorchServe still running: {alive}")
