"""``ecco explain --layers --watch ... --activations --nmf --intervene`` against the fake REST and gRPC servers,
and the watch table's "layer at which X overtakes Y" on a hand-made result."""

from __future__ import annotations

import io
import json

import pytest

from ecco_client.cli import main
from ecco_client.internals import WatchedTokens
from ecco_client.internals_table import overtakes

PROMPT = ["--prompt", "The capital of France is", "--max-new-tokens", "3"]
N_LAYERS = 2  # the fake server's tiny GPT-2


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_layers_and_watch_tables(server_args, transport: str) -> None:
    argv = ["explain", *server_args[transport], *PROMPT, "--no-attribution", "--layers", "--lens-top-k", "2"]
    code, text = _run([*argv, "--watch", " is", "--watch", " the", "--watch-id", "5"])
    assert code == 0, text
    lens = _section(text, "layer predictions (logit lens, top 2")
    assert len(lens) == 1 + 3 * (1 + N_LAYERS + 1)  # title, then per generated token: header + one row per lens layer
    assert [row.split()[0] for row in lens[2:5]] == ["emb", "1", "out"]
    assert all(row.count(" | ") == 1 for row in lens[2:5])  # top 2
    ranks = _section(text, "token rankings")
    assert len(ranks) == 2 + N_LAYERS + 1 and ranks[1].split()[0] == "layer"
    watch = _section(text, "watch list at 7")
    assert '" is"' in watch[1] and '" the"' in watch[1] and len(watch) == 2 + (N_LAYERS + 1) + 2  # 2 comparisons
    assert all(" above " in line or "overtakes" in line or "share rank" in line for line in watch[-2:])
    assert "attribution" not in text.split("timings:")[-1]  # no attribution stage ran


def test_activations_nmf_and_json(server_args) -> None:
    argv = ["explain", *server_args["grpc"], *PROMPT, "--method", "saliency", "--top", "2"]
    code, text = _run([*argv, "--activations", "--activation-top-k", "3", "--activation-layers", "1", "--nmf", "2"])
    assert code == 0, text
    acts = _section(text, "FFNN activations: 1 blocks x 11 positions x 128 neurons (top neurons by value)")
    assert len(acts) == 2 and acts[1].strip().startswith("block   1:") and acts[1].count(" | ") == 1
    nmf = _section(text, "NMF: 2 components of blocks 1 over 11 positions")
    assert len(nmf) == 1 + 2 * 2 and "fires on" in nmf[1] and "top neurons b1:n" in nmf[2]
    code, text = _run([*argv, "--json", "--activations", "--activation-positions", "0,3"])
    reply = json.loads(text)
    assert reply["internals"]["activations"]["positions"] == [0, 3]
    assert reply["internals"]["activations"]["layers"][0]["values"]["float16_values"]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_intervene_on_generate(server_args, transport: str) -> None:
    _, plain = _run(["generate", *server_args[transport], *PROMPT, "--json"])
    code, text = _run(["generate", *server_args[transport], *PROMPT, "--json", "--intervene", "1:0:set:100"])
    assert code == 0 and json.loads(text)["generated_text"] != json.loads(plain)["generated_text"]
    code, text = _run(["generate", *server_args[transport], *PROMPT, "--intervene", "1:0:scale:1"])
    assert code == 0 and text.splitlines()[-1] == "interventions: block 1 neuron 0 scale 1"


def test_internals_errors_exit_1_naming_the_field(server_args, capsys) -> None:
    argv = ["explain", *server_args["rest"], *PROMPT, "--no-attribution", "--activations", "--activation-top-k", "101"]
    assert _run(argv)[0] == 1
    assert "ecco: 413 RESOURCE_EXHAUSTED: internals.activation_top_k: must be at most 100" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--intervene", "1:2:double:3"], ["--intervene", "1:2"], ["--lens-positions", "a"]])
def test_bad_options_are_usage_errors(server_args, bad, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        _run(["explain", *server_args["rest"], *PROMPT, *bad])
    assert info.value.code == 2 and "error" in capsys.readouterr().err


def test_method_and_no_attribution_exclude_each_other(server_args) -> None:
    with pytest.raises(SystemExit, match="--no-attribution"):
        _run(["explain", *server_args["rest"], *PROMPT, "--no-attribution", "--method", "saliency"])


def test_overtake_lines() -> None:
    """' Paris' (row 0) is behind ' London' until lens layer 2, ahead from 2 on; ' Rome' is always behind."""
    watch = WatchedTokens(
        position=4,
        token_ids=(10, 11, 12),
        ranks=((9, 1, 0, 0), (3, 0, 1, 2), (50, 40, 30, 20)),
        probabilities=((0.0,) * 4,) * 3,
        texts=(" Paris", " London", " Rome"),
    )
    assert watch.overtake_layer(" Paris", " London") == 2 and watch.overtake_layer(" London", " Paris") is None
    assert watch.overtake_layer(10, 12) == 0 and watch.leader == 0
    lines = overtakes(watch, ['" Paris"', '" London"', '" Rome"'], n_layers=3)
    assert lines == [
        '  layer at which " Paris" overtakes " London": 2 (and stays ahead to the output)',
        '  " Paris" is above " Rome" at every layer',
    ]
