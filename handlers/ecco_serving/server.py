"""Start, wait for and stop one TorchServe instance that lives entirely inside a run directory.

TorchServe 0.12 keeps machine-wide state in surprising places; this module confines all of it:

- ``torchserve --start/--stop`` find "the" server through ``$TMPDIR/.model_server.pid``, and the
  frontend puts its worker sockets in ``java.io.tmpdir`` (``$TEMP``): both point into
  ``<run_dir>/tmp`` here, so ``stop`` stops only the server this run directory started and two
  servers (a dev server and a test session) never share a pid file or a socket.
- ``key_file.json`` (token authorization) and ``logs/`` are written to the working directory the
  server was started from: ``<run_dir>``.

With ``metrics_port``, ``start`` also runs the handler-metrics exporter (``ecco_serving.metrics_exporter``)
on that port: the workers write their metrics to ``<run_dir>/metrics`` (``PROMETHEUS_MULTIPROC_DIR`` in
TorchServe's environment, which the frontend hands on to every worker), the exporter serves their sum;
``stop`` stops it with TorchServe.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .metrics import MULTIPROC_ENV, prepare_dir
from .metrics_exporter import start_exporter, stop_exporter

#: the config.properties keys that carry a port, and the address key each belongs to
PORT_KEYS = {
    "inference": "inference_address",
    "management": "management_address",
    "metrics": "metrics_address",
    "grpc_inference": "grpc_inference_port",
    "grpc_management": "grpc_management_port",
    "worker_base": "initial_worker_port",
}


class ServerError(RuntimeError):
    """TorchServe did not start, did not load the model in time, or did not stop."""


@dataclass(frozen=True)
class Ports:
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int
    worker_base: int


@dataclass(frozen=True)
class Server:
    """A TorchServe started by ``start``; every path is inside ``run_dir``."""

    run_dir: Path
    ports: Ports
    pid: int  # the Java frontend
    metrics_exporter_port: int | None = None  # the handler metrics of all workers (None: not exported)

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.inference}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.management}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}"

    @property
    def metrics_exporter_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` of the handler-metrics exporter (scrape ``/metrics``), if started."""
        return None if self.metrics_exporter_port is None else f"http://127.0.0.1:{self.metrics_exporter_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports.grpc_inference}"

    @property
    def key_file(self) -> Path:
        return self.run_dir / "key_file.json"

    def keys(self) -> dict[str, str]:
        """``{"inference": ..., "management": ..., "API": ...}`` from the server's key file."""
        return read_keys(self.key_file)


def read_keys(key_file: Path) -> dict[str, str]:
    data = json.loads(Path(key_file).read_text())
    return {name: entry["key"] for name, entry in data.items()}


def read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def ports_of(props: Mapping[str, str]) -> Ports:
    """The ports a config.properties names (addresses like ``http://127.0.0.1:8080``)."""
    values = {}
    for name, key in PORT_KEYS.items():
        if key not in props:
            raise ServerError(f"config.properties has no {key}")
        values[name] = int(re.sub(r".*:", "", props[key]))
    return Ports(**values)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the OS reports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def config_with_ports(template: Path, out: Path, ports: Ports, extra: Mapping[str, str] | None = None) -> Path:
    """Copy ``template`` to ``out`` with every port (and ``extra`` keys) replaced."""
    replaced = {
        "inference_address": f"http://127.0.0.1:{ports.inference}",
        "management_address": f"http://127.0.0.1:{ports.management}",
        "metrics_address": f"http://127.0.0.1:{ports.metrics}",
        "grpc_inference_port": str(ports.grpc_inference),
        "grpc_management_port": str(ports.grpc_management),
        "initial_worker_port": str(ports.worker_base),
        **(extra or {}),
    }
    lines, seen = [], set()
    for line in Path(template).read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in replaced:
            lines.append(f"{key}={replaced[key]}")
            seen.add(key)
        else:
            lines.append(line)
    lines += [f"{key}={value}" for key, value in replaced.items() if key not in seen]
    Path(out).write_text("\n".join(lines) + "\n")
    return Path(out)


def metrics_dir(run_dir: Path) -> Path:
    """Where the workers of the server ``run_dir`` started write their Prometheus metrics."""
    return Path(run_dir) / "metrics"


def _environment(run_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    tmp = run_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        TMPDIR=str(tmp),  # pid file of `torchserve --start/--stop`
        TEMP=str(tmp),  # -> java.io.tmpdir: worker sockets
        LOG_LOCATION=str(run_dir / "logs"),
        METRICS_LOCATION=str(run_dir / "logs"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    env.pop(MULTIPROC_ENV, None)  # only where ``start`` sets it: its metrics directory
    env.update(extra or {})
    return env


def _torchserve(
    args: list[str], run_dir: Path, timeout: float, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Run ``torchserve ARGS`` from ``run_dir``; its output (and the Java frontend's) goes to a log.

    The frontend inherits the output streams, so they must be a file, never a pipe we wait on.
    """
    log = run_dir / "logs" / "torchserve.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        command = [sys.executable, "-m", "ts.model_server", *args]
        returncode = subprocess.run(
            command, cwd=run_dir, env=_environment(run_dir, env), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, timeout=timeout, check=False,
        ).returncode  # fmt: skip
    with log.open("rb") as out:
        out.seek(start)
        return returncode, out.read(4000).decode("utf-8", "replace")


def pid_file(run_dir: Path) -> Path:
    return Path(run_dir) / "tmp" / ".model_server.pid"


def running_pid(run_dir: Path) -> int | None:
    """The frontend pid this run directory started, if that process is still a TorchServe."""
    import psutil

    path = pid_file(run_dir)
    if not path.is_file():
        return None
    try:
        pid = int(path.read_text().split()[0])
        if "org.pytorch.serve.ModelServer" in psutil.Process(pid).cmdline():
            return pid
    except (ValueError, IndexError, psutil.Error):
        pass
    return None


def _get_json(url: str, token: str, timeout: float = 5.0):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def load_failure(run_dir: Path, model: str) -> str | None:
    """The worker's first Python error if TorchServe reported that ``model`` failed to load, else None."""
    logs = Path(run_dir) / "logs"
    frontend = logs / "ts_log.log"
    if not frontend.is_file() or f"Load model failed: {model}," not in frontend.read_text(errors="replace"):
        return None
    worker = logs / "model_log.log"
    text = worker.read_text(errors="replace") if worker.is_file() else ""
    errors = re.findall(r"MODEL_LOG - ((?:\w+\.)*\w*(?:Error|Exception)\b.*)", text)
    return errors[0] if errors else "the worker died while loading the model"


def wait_ready(server: Server, models: Iterable[str], timeout: float) -> None:
    """Block until every model has at least one READY worker (management API, with the token).

    Fails at once when TorchServe reports that a model's worker died while loading it.
    """
    deadline = time.monotonic() + timeout
    pending = list(models)
    last_error = "no answer yet"
    while pending:
        failure = load_failure(server.run_dir, pending[0])
        if failure:
            raise ServerError(f"model {pending[0]} failed to load: {failure}; see {server.run_dir}/logs")
        if time.monotonic() > deadline:
            raise ServerError(
                f"models {pending} not ready after {timeout:.0f} s ({last_error}); see {server.run_dir}/logs"
            )
        if running_pid(server.run_dir) is None:
            raise ServerError(f"TorchServe exited during start-up; see {server.run_dir}/logs")
        try:
            token = server.keys()["management"]
            described = _get_json(f"{server.management_url}/models/{pending[0]}", token)
            if any(w.get("status") == "READY" for w in described[0].get("workers", [])):
                pending.pop(0)
                continue
            last_error = "no READY worker"
        except (OSError, ValueError, KeyError, urllib.error.URLError) as error:
            last_error = f"{type(error).__name__}: {error}"
        time.sleep(0.5)


def start(
    run_dir: Path,
    config: Path,
    model_store: Path,
    models: Mapping[str, str],
    *,
    timeout: float = 300.0,
    metrics_port: int | None = None,
) -> Server:
    """Start TorchServe in the background with ``models`` ({name: archive in model_store}) and wait.

    ``run_dir`` becomes the server's working directory (key file, logs, pid file, sockets).
    ``metrics_port``: also start the handler-metrics exporter there (see the module doc).
    Raises ``ServerError`` if a server from this run directory is already running.
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if running_pid(run_dir) is not None:
        raise ServerError(f"a TorchServe started from {run_dir} is already running (pid {running_pid(run_dir)})")
    (run_dir / "key_file.json").unlink(missing_ok=True)
    logs = run_dir / "logs"
    if logs.is_dir():  # keep one previous run's logs; this run's start-up is judged on its own
        shutil.rmtree(run_dir / "logs.previous", ignore_errors=True)
        logs.rename(run_dir / "logs.previous")
    ports = ports_of(read_properties(config))
    env = {}
    if metrics_port is not None:  # a clean metrics directory and its exporter before any worker starts
        stop_exporter(run_dir)
        env[MULTIPROC_ENV] = str(prepare_dir(metrics_dir(run_dir)))
        try:
            start_exporter(run_dir, metrics_port, metrics_dir(run_dir), clean=False)
        except RuntimeError as error:
            raise ServerError(str(error)) from None
    args = ["--start", "--ts-config", str(Path(config).resolve()), "--model-store", str(Path(model_store).resolve())]
    args += ["--ncs", "--models", *(f"{name}={archive}" for name, archive in models.items())]
    returncode, output = _torchserve(args, run_dir, timeout=60, env=env)
    if returncode != 0:
        stop_exporter(run_dir)
        raise ServerError(f"torchserve --start failed: {output}")
    deadline = time.monotonic() + 30
    while (pid := running_pid(run_dir)) is None:
        if time.monotonic() > deadline:
            stop_exporter(run_dir)
            raise ServerError(f"TorchServe did not start: {output}")
        time.sleep(0.2)
    server = Server(run_dir=run_dir, ports=ports, pid=pid, metrics_exporter_port=metrics_port)
    try:
        wait_ready(server, models, timeout)
    except BaseException:
        stop(run_dir)
        raise
    return server


def stop(run_dir: Path, timeout: float = 60.0) -> bool:
    """Stop the TorchServe this run directory started (frontend and its workers) and its metrics
    exporter; False if no TorchServe ran."""
    import psutil

    run_dir = Path(run_dir).resolve()
    pid = running_pid(run_dir)
    if pid is None:
        stop_exporter(run_dir)
        return False
    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        family = []
    _torchserve(["--stop", "--foreground"], run_dir, timeout=timeout + 10)
    _, alive = psutil.wait_procs(family, timeout=timeout)
    for process in alive:  # only processes this server started
        process.kill()
    psutil.wait_procs(alive, timeout=10)
    pid_file(run_dir).unlink(missing_ok=True)
    (run_dir / "key_file.json").unlink(missing_ok=True)
    stop_exporter(run_dir)
    return True
