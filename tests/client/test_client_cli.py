"""The ``ecco`` command line against the real REST and gRPC servers of conftest."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_torchserve import MODEL, TOKEN
from google.protobuf import json_format

from ecco_client.cli import main
from ecco_proto.ecco.v1 import ecco_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
PROMPT = ["--prompt", "The capital of France is", "--max-new-tokens", "3"]


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_explain_table(server_args, transport: str) -> None:
    code, text = _run(["explain", *server_args[transport], *PROMPT, "--method", "grad_x_input", "--top", "2"])
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0].startswith(f"model {MODEL} · engine ")
    assert "grad_x_input (target probability, aggregation l2_normalized)" in lines
    header = next(i for i, line in enumerate(lines) if "top 2 sources" in line)
    rows = lines[header + 1 : header + 4]
    assert len(rows) == 3 and all(row.split()[0].isdigit() for row in rows)  # one row per generated token
    assert all(row.count(" | ") <= 1 for row in rows)  # at most 2 sources each
    assert lines[-1].startswith("timings: tokenize")


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_sampled_method_options_reach_the_server(server_args, transport: str) -> None:
    options = ["--method", "kernel_shap", "--n-samples", "3", "--sampling-seed", "4", "--stdevs", "0.5", "--json"]
    code, text = _run(["explain", *server_args[transport], *PROMPT, *options])
    assert code == 0, text
    reply = json_format.Parse(text, pb.ExplainResponse())
    (attribution,) = reply.attributions
    assert (attribution.method, attribution.n_samples, attribution.sampling_seed) == ("kernel_shap", 3, 4)
    code, text = _run(["explain", *server_args[transport], *PROMPT, *options[:-1]])
    assert code == 0, text
    assert "kernel_shap (target probability, aggregation l2_normalized, baseline eos, samples 3, seed 4)" in text


def test_explain_json_is_the_reply(server_args) -> None:
    code, text = _run(
        [
            "explain",
            *server_args["grpc"],
            *PROMPT,
            "--method",
            "integrated_gradients",
            "--n-steps",
            "4",
            "--positions",
            "0,2",
            "--baseline",
            "zero",
            "--json",
        ]
    )
    assert code == 0
    reply = json_format.ParseDict(json.loads(text), pb.ExplainResponse())
    (ig,) = reply.attributions
    assert ig.method == "integrated_gradients" and ig.baseline == "zero" and list(ig.n_steps) == [4, 4]
    assert list(ig.target_positions) == [reply.prompt_length, reply.prompt_length + 2]
    rest_code, rest_text = _run(
        [
            "explain",
            *server_args["rest"],
            *PROMPT,
            "--method",
            "integrated_gradients",
            "--n-steps",
            "4",
            "--positions",
            "0,2",
            "--baseline",
            "zero",
            "--json",
        ]
    )
    rest = json.loads(rest_text)
    grpc_reply = json.loads(text)
    for reply_json in (rest, grpc_reply):
        reply_json.pop("timings")
    assert rest_code == 0 and rest == grpc_reply


def test_generate_chat_and_stream(server_args) -> None:
    code, text = _run(["generate", *server_args["rest"], "--chat", "user:Capital of France?", "--max-new-tokens", "2"])
    assert code == 0 and "finish reason: " in text and "pos" in text
    for transport in ("grpc", "rest"):
        code, text = _run(
            [
                "explain",
                *server_args[transport],
                *PROMPT,
                "--method",
                "integrated_gradients",
                "--n-steps",
                "2",
                "--stream",
            ]
        )
        assert code == 0, transport
        assert [line.split(":")[0] for line in text.splitlines()[:3]] == ["token 0", "token 1", "token 2"]
        assert "row   integrated_gradients @ " in text and "top 5 sources" in text


def test_errors_exit_1_with_the_message(server_args, capsys) -> None:
    code, _ = _run(["explain", *server_args["rest"], "--prompt", "x", "--target", "contrastive"])
    assert code == 1
    assert "400 INVALID_ARGUMENT: attribution.contrast_token: is required" in capsys.readouterr().err
    code, _ = _run(["generate", *server_args["grpc"], "--prompt", "x", "--max-new-tokens", "100000"])
    assert code == 1
    assert "413 RESOURCE_EXHAUSTED: generation.max_new_tokens" in capsys.readouterr().err
    code, _ = _run(
        ["generate", "--grpc", server_args["grpc"][1], "--model", MODEL, "--token", "wrong", "--prompt", "x"]
    )
    assert code == 1 and "UNAUTHENTICATED" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(["explain", *server_args["rest"], "--kserve", "--prompt", "x", "--stream"])  # KServe v1 cannot stream


def test_key_file_and_module_entry_point(tmp_path, rest_url) -> None:
    """``python -m ecco_client`` in a fresh process, run from a directory holding TorchServe's key file."""
    (tmp_path / "key_file.json").write_text(json.dumps({"inference": {"key": TOKEN, "expiration time": "x"}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("handlers", "clients"))}
    env.pop("ECCO_KEY_FILE", None)
    env.pop("ECCO_TOKEN", None)
    argv = ["generate", "--url", rest_url, "--model", MODEL, "--prompt", "Hi", "--max-new-tokens", "1", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "ecco_client", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == MODEL
