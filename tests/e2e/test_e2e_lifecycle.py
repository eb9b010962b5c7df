"""Starting and stopping TorchServe: a model that cannot load fails the start quickly, leaving nothing."""

from __future__ import annotations

import shutil
import time

import psutil
import pytest
from conftest import REPO

from ecco_serving.archive import build_archive
from ecco_serving.server import Ports, ServerError, config_with_ports, free_ports, running_pid, start

pytestmark = pytest.mark.slow


def _torchserves_under(path) -> list[int]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "org.pytorch.serve.ModelServer" in cmdline and str(path) in cmdline:
            found.append(process.info["pid"])
    return found


def test_a_model_that_cannot_load_fails_the_start_and_leaves_no_process(model_dirs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(model_dirs["tiny"], broken)
    (broken / "model.safetensors").unlink()
    store = tmp_path / "store"
    build_archive(broken, store, "broken")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = config_with_ports(REPO / "config.properties", run_dir / "config.properties", Ports(*free_ports(6)))
    started = time.perf_counter()
    with pytest.raises(ServerError, match=r"model broken failed to load: .*Error"):
        start(run_dir, config, store, {"broken": "broken.mar"}, timeout=120)
    assert time.perf_counter() - started < 60  # not the whole timeout
    assert running_pid(run_dir) is None and not _torchserves_under(run_dir)
