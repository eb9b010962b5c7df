"""One real TorchServe for the whole e2e session: tiny random models, free ports, token auth on.

Two archives (one worker each, batchSize 4 so concurrent requests batch):

- ``tiny``: a random tiny Llama with the tiny tokenizer; it opts in to gRPC streaming
  (``handler.grpc_stream``), so the tests never send it ``stream`` on a ``Predictions`` call;
- ``tiny-nan``: the same model with NaN weights in one MLP, to provoke the errors a healthy model does
  not have: a NaN attribution (422) and a crash inside the engine (sampling from NaN probabilities, 500).
  It keeps the default (gRPC ``stream`` refused), the setting any client may meet.

TorchServe runs from a temporary run directory (pid file, worker sockets, key file, logs), so it never
meets a TorchServe a developer is running; it is stopped at the end of the session and every process
it started (frontend, workers and the handler-metrics exporter) is checked to be gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import torch

from ecco_engine import EngineLimits, Explainer
from ecco_engine.loading import load_model
from ecco_serving.archive import ArchiveSettings, build_archive
from ecco_serving.metrics_exporter import running_exporter
from ecco_serving.server import Ports, config_with_ports, free_ports, start, stop
from tiny_models import tiny_model, tiny_tokenizer
from ts_calls import Served

REPO = Path(__file__).resolve().parents[2]
#: engine limits of the test archives (small, so that 413 is cheap to provoke)
#: internals.max_activation_elements: a prompt of ~10 tokens (2 blocks x 64 neurons) fits, ~40 do not
LIMITS = {"max_new_tokens": 32, "max_n_steps": 128, "internals": {"max_activation_elements": 4096}}
BATCH = ArchiveSettings(workers=1, batch_size=4, max_batch_delay_ms=100, response_timeout_s=120, limits=LIMITS)
SETTINGS = {"tiny": replace(BATCH, grpc_stream=True), "tiny-nan": BATCH}


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    broken = tiny_model("llama")
    with torch.no_grad():
        broken.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    return {"tiny": _save(tiny_model("llama"), root / "tiny"), "tiny-nan": _save(broken, root / "tiny-nan")}


@pytest.fixture(scope="session")
def served(tmp_path_factory, model_dirs) -> Iterator[Served]:
    store = tmp_path_factory.mktemp("store")
    archives = {name: build_archive(folder, store, name, SETTINGS[name]).name for name, folder in model_dirs.items()}
    run_dir = tmp_path_factory.mktemp("run")
    ports = free_ports(7)
    config = config_with_ports(REPO / "config.properties", run_dir / "config.properties", Ports(*ports[:6]))
    started = time.perf_counter()
    server = start(run_dir, config, store, archives, timeout=240, metrics_port=ports[6])  # + metrics exporter
    print(f"\nTorchServe up with {list(archives)} in {time.perf_counter() - started:.1f} s")
    family = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    family += [psutil.Process(pid) for pid in [running_exporter(run_dir)] if pid is not None]
    try:
        yield Served(server=server, model_dirs=dict(model_dirs), keys=server.keys())
    finally:
        stop(run_dir)
        alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"processes of the test TorchServe still running: {alive}"


@pytest.fixture(scope="session")
def reference(model_dirs) -> Explainer:
    """The in-process engine on the same model folder and limits as the served ``tiny``."""
    model, tokenizer = load_model(model_dirs["tiny"])
    return Explainer(model, tokenizer, limits=EngineLimits.from_mapping(LIMITS))
