"""The handler metrics of every TorchServe worker, summed, on one HTTP port for Prometheus.

``python -m ecco_serving.metrics_exporter --port 8083 --dir .run/serve/metrics [--clean]`` serves
``GET /metrics`` on 127.0.0.1 (``--host`` to change): prometheus-client's ``MultiProcessCollector``
over the workers' files in ``--dir`` (see ``ecco_serving.metrics``). Before each scrape, the
``livesum`` gauge files of workers that are gone are removed, so a crashed worker's in-flight
requests do not stay counted. ``--clean`` deletes old files first: only before TorchServe starts.

``start_exporter`` / ``stop_exporter`` run it as a background process owned by a run directory
(pid file ``<run_dir>/metrics_exporter.pid``, log ``<run_dir>/logs/metrics_exporter.log``), the way
``ecco_serving.server`` runs TorchServe.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .metrics import MULTIPROC_ENV, prepare_dir

PID_FILE = "metrics_exporter.pid"
_LIVE_GAUGE = re.compile(r"gauge_live\w*?_(\d+)\.db$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def remove_dead_workers(directory: Path) -> list[int]:
    """Drop the live-gauge files of processes that no longer run; returns their pids."""
    from prometheus_client import multiprocess

    dead = set()
    for path in Path(directory).glob("gauge_live*.db"):
        match = _LIVE_GAUGE.search(path.name)
        if match and not _pid_alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in sorted(dead):
        multiprocess.mark_process_dead(pid, str(directory))
    return sorted(dead)


def make_app(directory: Path):
    """A WSGI app: ``/metrics`` is the sum over every worker's files in ``directory``."""
    from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess

    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    metrics_app = make_wsgi_app(registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO", "/") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /metrics here\n"]
        remove_dead_workers(directory)
        return metrics_app(environ, start_response)

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # one line per scrape is noise
        pass


def serve(directory: Path, port: int, host: str = "127.0.0.1", *, clean: bool = False) -> None:
    """Serve until SIGTERM / SIGINT."""
    directory = Path(directory).resolve()
    if clean:
        prepare_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    server = make_server(host, port, make_app(directory), WSGIServer, handler_class=_QuietHandler)
    stopping = threading.Event()

    def stop(signum, frame):
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"metrics exporter: http://{host}:{server.server_port}/metrics from {directory}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()


# ---- as a background process of a run directory ------------------------------------------------
@dataclass(frozen=True)
class Exporter:
    pid: int
    port: int
    directory: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"


def _pid_file(run_dir: Path) -> Path:
    return Path(run_dir) / PID_FILE


def running_exporter(run_dir: Path) -> int | None:
    """The pid of the exporter ``run_dir`` started, if it still runs."""
    import psutil

    path = _pid_file(run_dir)
    if not path.is_file():
        return None
    try:
        pid = int(path.read_text().split()[0])
        if "ecco_serving.metrics_exporter" in " ".join(psutil.Process(pid).cmdline()):
            return pid
    except (ValueError, IndexError, psutil.Error):
        pass
    return None


def start_exporter(
    run_dir: Path, port: int, directory: Path, *, host: str = "127.0.0.1", clean: bool = True, timeout: float = 30.0
) -> Exporter:
    """Start the exporter in the background (cleaning ``directory`` first) and wait until it answers."""
    run_dir = Path(run_dir).resolve()
    directory = Path(directory).resolve()
    if running_exporter(run_dir) is not None:
        raise RuntimeError(f"a metrics exporter started from {run_dir} is already running")
    if clean:
        prepare_dir(directory)
    log = run_dir / "logs" / "metrics_exporter.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    handlers = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [handlers, os.environ.get("PYTHONPATH")]))}
    env.pop(MULTIPROC_ENV, None)  # the exporter reads the files; it writes none
    command = [sys.executable, "-m", "ecco_serving.metrics_exporter", "--port", str(port), "--host", host]
    command += ["--dir", str(directory)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    _pid_file(run_dir).write_text(f"{process.pid}\n")
    exporter = Exporter(process.pid, port, directory, host)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(exporter.url, timeout=2):
                return exporter
        except (OSError, urllib.error.URLError):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_exporter(run_dir)
                raise RuntimeError(f"the metrics exporter did not start; see {log}") from None
            time.sleep(0.2)


def stop_exporter(run_dir: Path, timeout: float = 10.0) -> bool:
    """Stop the exporter ``run_dir`` started; False if none was running."""
    import psutil

    pid = running_exporter(run_dir)
    _pid_file(run_dir).unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        process.terminate()
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(timeout)
    except psutil.NoSuchProcess:
        pass
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecco_serving.metrics_exporter", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dir", type=Path, required=True, help=f"the workers' {MULTIPROC_ENV}")
    parser.add_argument("--clean", action="store_true", help="delete old metric files first (before TorchServe)")
    args = parser.parse_args(argv)
    serve(args.dir, args.port, args.host, clean=args.clean)
    return 0


if __name__ == "__main__":
    sys.exit(main())
