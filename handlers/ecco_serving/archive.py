"""Build a TorchServe model archive for a local model folder, in directory format.

``torch-model-archiver --archive-format no-archive`` writes ``<store>/<name>.mar/`` with the manifest,
the handler, the Python packages it imports and ``model-config.yaml``. The model's files are then
hard-linked into ``<store>/<name>.mar/model/`` (copied only across file systems), so rebuilding the
archive of a 500 MB model takes a second and no disk space: nothing is zipped or duplicated.

Layout of an archive (also the worker's import path: TorchServe puts the folder on PYTHONPATH)::

    <name>.mar/MAR-INF/MANIFEST.json     written by torch-model-archiver (model name, handler, config)
    <name>.mar/ecco_handler.py           the TorchServe handler (glue over ecco_dataplane)
    <name>.mar/model-config.yaml         workers, batching, timeouts, engine limits
    <name>.mar/ecco_engine/ ...          what the handler imports: the paths of SHIPPED
    <name>.mar/model/                    the model folder (config, safetensors, tokenizer)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HANDLERS_DIR = Path(__file__).resolve().parent.parent
#: torch-model-archiver's spelling of "the function ``handle`` of ecco_handler.py" (run from HANDLERS_DIR)
HANDLER = "ecco_handler:handle"
CONFIG_TEMPLATE = HANDLERS_DIR / "model-config.yaml"
#: what the handler imports, relative to handlers/ (packages, or single modules); copied into every archive.
#: Of ecco_serving only the metrics the handler records with: its ops tooling (archive, server, exporter)
#: and the offline tools (tools/ecco_tools: probing experiment, GGUF converter) are never shipped.
SHIPPED = (
    "ecco_engine",
    "ecco_codec",
    "ecco_dataplane",
    "ecco_proto",
    "ecco_serving/__init__.py",
    "ecco_serving/metrics.py",
)
MODEL_SUBDIR = "model"
ARCHIVE_SUFFIX = ".mar"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


@dataclass(frozen=True)
class ArchiveSettings:
    """Overrides of handlers/model-config.yaml; ``None`` keeps the template's value."""

    workers: int | None = None
    batch_size: int | None = None
    max_batch_delay_ms: int | None = None
    response_timeout_s: int | None = None
    #: requests waiting for a worker; with the queue full TorchServe refuses at once (REST 503, gRPC INTERNAL)
    job_queue_size: int | None = None
    #: engine limits: ``{"max_n_steps": 128, "internals.max_top_k": 10}`` or ``{"internals": {...}}``
    limits: Mapping[str, Any] | None = None
    #: ``handler.grpc_stream``: stream gRPC requests that ask for it (see handlers/model-config.yaml)
    grpc_stream: bool | None = None


def model_config(settings: ArchiveSettings, template: Path = CONFIG_TEMPLATE) -> dict[str, Any]:
    """The template's settings with ``settings`` applied."""
    config = yaml.safe_load(Path(template).read_text())
    if settings.workers is not None:
        config["minWorkers"] = config["maxWorkers"] = settings.workers
    if settings.batch_size is not None:
        config["batchSize"] = settings.batch_size
    if settings.max_batch_delay_ms is not None:
        config["maxBatchDelay"] = settings.max_batch_delay_ms
    if settings.response_timeout_s is not None:
        config["responseTimeout"] = settings.response_timeout_s
    if settings.job_queue_size is not None:
        config["jobQueueSize"] = settings.job_queue_size
    if settings.grpc_stream is not None:
        config["handler"]["grpc_stream"] = settings.grpc_stream
    if settings.limits:
        _override_limits(config["handler"]["limits"], settings.limits)
    return config


def _leaves(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": 1, "internals": {"b": 2}}`` -> ``{"a": 1, "internals.b": 2}``."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat.update(_leaves(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _override_limits(limits: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Set ``overrides`` (``NAME`` / ``internals.NAME`` -> N, or a nested ``internals`` mapping) in the
    template's ``handler.limits``; a name the template does not list fails (it lists every engine limit)."""
    known = _leaves(limits)
    wanted = _leaves(overrides)
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"unknown engine limits {unknown}; known: {sorted(known)}")
    for path, value in wanted.items():
        *sections, name = path.split(".")
        target = limits
        for section in sections:
            target = target[section]
        target[name] = value


def default_name(model_dir: Path) -> str:
    """A URL-safe model name from a folder name (``SmolLM2-135M_Instruct`` -> ``smollm2-135m-instruct``)."""
    name = re.sub(r"[^a-z0-9-]+", "-", Path(model_dir).name.lower()).strip("-")
    return name or "model"


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link every file of ``source`` under ``target`` (copy where linking is impossible)."""
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        destination = target / Path(root).relative_to(source)
        destination.mkdir(parents=True, exist_ok=True)
        for file in files:
            try:
                os.link(Path(root) / file, destination / file)
            except OSError:
                shutil.copy2(Path(root) / file, destination / file)


def archive_path(store: Path, name: str) -> Path:
    """Where the archive of model ``name`` lives: ``<store>/<name>.mar/`` (a directory)."""
    return Path(store) / f"{name}{ARCHIVE_SUFFIX}"


def build_archive(
    model_dir: Path,
    store: Path,
    name: str | None = None,
    settings: ArchiveSettings = ArchiveSettings(),
    *,
    version: str = "1.0",
) -> Path:
    """Build ``<store>/<name>.mar/`` for the model folder ``model_dir``; returns the archive folder.

    The served model name is ``name`` (default: the folder's name); the old archive is replaced.
    """
    model_dir = Path(model_dir).resolve()
    store = Path(store).resolve()
    name = name or default_name(model_dir)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"model name {name!r}: use letters, digits, '-', '_' and '.'")
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a model folder (no config.json)")
    if not (HANDLERS_DIR / "ecco_proto" / "ecco" / "v1" / "ecco_pb2.py").is_file():
        raise FileNotFoundError("the generated protobuf modules are missing: run `make protos` first")
    archive = archive_path(store, name)
    if archive == model_dir or model_dir.is_relative_to(archive):
        raise ValueError(f"the archive {archive} would overwrite the model folder; pass another name")
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ecco-archive-", dir=store) as tmp:  # same file system
        staging = Path(tmp) / "extra"
        staging.mkdir()
        for path in SHIPPED:
            source, target = HANDLERS_DIR / path, staging / path
            if source.is_dir():
                shutil.copytree(source, target, ignore=_IGNORED)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        config_file = Path(tmp) / "model-config.yaml"
        config_file.write_text(yaml.safe_dump(model_config(settings), sort_keys=False))
        export = Path(tmp) / "export"
        export.mkdir()
        command = [
            *_archiver(),
            "--model-name", name,
            "--version", version,
            "--handler", HANDLER,
            "--extra-files", str(staging),
            "--config-file", str(config_file),
            "--archive-format", "no-archive",
            "--export-path", str(export),
        ]  # fmt: skip
        env = {**os.environ, "TMPDIR": tmp}  # the archiver stages in (and first deletes) $TMPDIR/<name>
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HANDLERS_DIR, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"torch-model-archiver failed:\n{result.stdout}{result.stderr}")
        _link_tree(model_dir, export / name / MODEL_SUBDIR)
        if archive.exists():
            shutil.rmtree(archive)
        (export / name).rename(archive)
    return archive


def _archiver() -> list[str]:
    return [sys.executable, "-c", "from model_archiver.model_packaging import generate_model_archive as g; g()"]
