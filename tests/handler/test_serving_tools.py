"""ecco_serving without a server: archive layout and contents, model-config, config.properties copies."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ecco_engine import EngineLimits
from ecco_engine.internals import InternalsLimits
from ecco_serving.__main__ import main as serving_main
from ecco_serving.archive import SHIPPED, ArchiveSettings, build_archive, default_name, model_config
from ecco_serving.server import Ports, config_with_ports, ports_of, read_properties
from tiny_models import tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "Tiny_Llama"
    tiny_model("llama").save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def test_model_config_applies_overrides_and_rejects_unknown_limits():
    config = model_config(ArchiveSettings(workers=2, batch_size=4, response_timeout_s=60, limits={"max_n_steps": 8}))
    assert (config["minWorkers"], config["maxWorkers"], config["batchSize"], config["responseTimeout"]) == (2, 2, 4, 60)
    assert config["handler"]["limits"]["max_n_steps"] == 8
    assert config["handler"]["limits"]["max_new_tokens"] == 256  # the template's value stays
    with pytest.raises(ValueError, match="max_step"):
        model_config(ArchiveSettings(limits={"max_step": 1}))


def test_internals_limits_are_nested_and_checked():
    dotted = model_config(ArchiveSettings(limits={"internals.max_activation_elements": 5, "max_methods": 2}))
    nested = model_config(ArchiveSettings(limits={"internals": {"max_activation_elements": 5}, "max_methods": 2}))
    assert dotted == nested
    limits = EngineLimits.from_mapping(dotted["handler"]["limits"])  # what the handler does at start-up
    assert (limits.internals.max_activation_elements, limits.max_methods) == (5, 2)
    assert limits.internals.max_top_k == InternalsLimits().max_top_k  # the rest stays
    for bad in ({"internals.max_topk": 1}, {"internals": {"nope": 1}}, {"max_top_k": 1}):
        with pytest.raises(ValueError, match="unknown engine limits"):
            model_config(ArchiveSettings(limits=bad))


def test_template_lists_every_engine_limit_at_its_default():
    """handlers/model-config.yaml documents the engine's defaults: every limit, the same values."""
    template = model_config(ArchiveSettings())["handler"]["limits"]
    assert EngineLimits.from_mapping(template) == EngineLimits()
    assert set(template["internals"]) == {f.name for f in dataclasses.fields(InternalsLimits)}
    assert set(template) - {"internals"} == {f.name for f in dataclasses.fields(EngineLimits)} - {"internals"}


def test_archive_cli_accepts_internals_limits(model_dir, tmp_path):
    code = serving_main(
        ["--store", str(tmp_path), "archive", "--model", str(model_dir), "--name", "t",
         "--limit", "internals.max_watch=3", "--limit", "max_n_steps=9"]
    )  # fmt: skip
    assert code == 0
    config = yaml.safe_load((tmp_path / "t.mar" / "model-config.yaml").read_text())
    assert config["handler"]["limits"]["internals"]["max_watch"] == 3
    assert config["handler"]["limits"]["max_n_steps"] == 9


def test_archive_is_a_directory_with_linked_weights(model_dir, tmp_path):
    archive = build_archive(model_dir, tmp_path, settings=ArchiveSettings(batch_size=2))
    assert archive == tmp_path / "tiny-llama.mar" and default_name(model_dir) == "tiny-llama"
    manifest = json.loads((archive / "MAR-INF" / "MANIFEST.json").read_text())["model"]
    assert manifest["modelName"] == "tiny-llama"
    assert manifest["handler"] == "ecco_handler:handle" and (archive / "ecco_handler.py").is_file()
    assert yaml.safe_load((archive / manifest["configFile"]).read_text())["batchSize"] == 2
    for path in SHIPPED:
        assert (archive / path).is_file() if path.endswith(".py") else (archive / path / "__init__.py").is_file()
    assert not list(archive.rglob("__pycache__"))
    weights = archive / "model" / "model.safetensors"
    assert os.stat(weights).st_ino == os.stat(model_dir / "model.safetensors").st_ino  # linked, not copied
    again = build_archive(model_dir, tmp_path, "other")  # another name, another archive; rebuild replaces
    assert again.name == "other.mar" and build_archive(model_dir, tmp_path, "other") == again


def test_archive_carries_what_the_handler_imports_and_no_offline_tools(model_dir, tmp_path):
    archive = build_archive(model_dir, tmp_path, "t")
    sources = {p.relative_to(archive).as_posix(): p.read_text() for p in archive.rglob("*.py")}
    for offline in ("conllu", "probing", "probes", "convert", "experiment", "alignment", "ecco_tools"):
        assert not [name for name in sources if offline in name], offline
    for definition in ("def read_conllu", "def run_probing", "def convert_gguf", "def build_archive", "def start("):
        assert not [name for name, text in sources.items() if definition in text], definition
    assert sorted(n for n in sources if n.startswith("ecco_serving/")) == [
        "ecco_serving/__init__.py",
        "ecco_serving/metrics.py",
    ]
    # the handler's imports resolve inside the archive (TorchServe puts the folder on the worker's path)
    listing = (
        "import sys, ecco_handler; "
        "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.split('.')[0].startswith('ecco_')))"
    )
    env = {**os.environ, "PYTHONPATH": str(archive)}
    result = subprocess.run(
        [sys.executable, "-c", listing], cwd=archive, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = [Path(line) for line in result.stdout.split()]
    assert any(path.name == "similarity.py" for path in loaded)  # ecco_engine.analysis: served, stays
    assert loaded and all(path.is_relative_to(archive) for path in loaded), loaded


def test_archive_refuses_to_overwrite_its_model_folder(model_dir, tmp_path):
    folder = tmp_path / "same.mar"  # a model folder named like the archive it would become
    folder.mkdir()
    for item in model_dir.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    with pytest.raises(ValueError, match="overwrite"):
        build_archive(folder, tmp_path, "same")
    assert (folder / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="model name"):
        build_archive(model_dir, tmp_path, "bad name")


def test_config_properties_listens_on_localhost_with_auth_on():
    props = read_properties(REPO / "config.properties")
    for key in ("inference_address", "management_address", "metrics_address"):
        assert props[key].startswith("http://127.0.0.1:")
    assert props["grpc_inference_address"] == props["grpc_management_address"] == "127.0.0.1"
    assert props["disable_token_authorization"] == "false" and props["enable_model_api"] == "false"
    assert props["metrics_mode"] == "prometheus" and props["decode_input_request"] == "false"


def test_config_copy_changes_only_the_ports(tmp_path):
    ports = Ports(1, 2, 3, 4, 5, 6)
    copy = config_with_ports(REPO / "config.properties", tmp_path / "c.properties", ports)
    assert ports_of(read_properties(copy)) == ports
    original, copied = read_properties(REPO / "config.properties"), read_properties(copy)
    changed = {key for key in original if original[key] != copied[key]}
    assert changed == {
        "inference_address", "management_address", "metrics_address",
        "grpc_inference_port", "grpc_management_port", "initial_worker_port",
    }  # fmt: skip
