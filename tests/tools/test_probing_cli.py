"""``python -m ecco_tools.probing``: similarity over saved activations, and the probe command end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ecco_engine.analysis import cca, layer_similarity, linear_cka
from ecco_tools.probing.cli import main
from tiny_models import tiny_model, tiny_tokenizer


def test_similarity_of_two_saved_matrices(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 12)), rng.standard_normal((300, 20))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "acts.npz", y=y, other=x)
    assert main(["similarity", str(tmp_path / "x.npy"), f"{tmp_path / 'acts.npz'}:y", "--method", "cka"]) == 0
    method, value = capsys.readouterr().out.split()
    assert method == "cka" and float(value) == pytest.approx(linear_cka(x, y), abs=1e-6)
    assert main(["similarity", str(tmp_path / "x.npy"), f"{tmp_path / 'acts.npz'}:y", "--method", "cca"]) == 0
    assert float(capsys.readouterr().out.split()[1]) == pytest.approx(cca(x, y), abs=1e-6)
    # too few examples for CCA is an error message and exit code 2, not a traceback
    np.save(tmp_path / "wide.npy", rng.standard_normal((10, 30)))
    assert main(["similarity", str(tmp_path / "wide.npy"), str(tmp_path / "wide.npy"), "--method", "cca"]) == 2
    assert "needs more examples" in capsys.readouterr().err


def test_layer_matrix_of_a_saved_stack(tmp_path, capsys):
    rng = np.random.default_rng(1)
    stack = rng.standard_normal((3, 50, 8)).astype(np.float16)
    np.save(tmp_path / "hidden.npy", stack)
    assert main(["layers", str(tmp_path / "hidden.npy"), "--csv", str(tmp_path / "m.csv")]) == 0
    printed = np.array([[float(v) for v in line.split()] for line in capsys.readouterr().out.strip().splitlines()])
    expected = layer_similarity([layer.astype(np.float32) for layer in stack], "linear_cka")
    np.testing.assert_allclose(printed, expected, atol=1e-4)
    np.testing.assert_allclose(np.loadtxt(tmp_path / "m.csv", delimiter=","), expected, atol=1e-6)


@pytest.mark.slow
def test_probe_command_end_to_end_on_a_tiny_model(tmp_path, capsys):
    """Tiny random llama, 40 sentences: all files written, one row per probe, accuracies in [0, 1]."""
    model_dir = tmp_path / "tiny-llama"
    tiny_model("llama").save_pretrained(model_dir)
    tiny_tokenizer().save_pretrained(model_dir)
    words = ["the", "dog", "runs", "a", "cat", "sleeps", "fast", "."]
    tags = {"the": "DET", "a": "DET", "dog": "NOUN", "cat": "NOUN", "runs": "VERB", "sleeps": "VERB"}
    rng = np.random.default_rng(2)
    lines = []
    for _ in range(40):
        sentence = [words[i] for i in rng.integers(0, 7, 6)] + ["."]
        for i, w in enumerate(sentence):
            lines.append(f"{i + 1}\t{w}\t_\t{tags.get(w, 'ADV' if w == 'fast' else 'PUNCT')}\tX\t_\t0\tdep\t_\t_")
        lines.append("")
    (tmp_path / "data.conllu").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    command = ["probe", "--model", str(model_dir), "--conllu", str(tmp_path / "data.conllu"), "--out", str(out)]
    code = main([*command, "--name", "tiny", "--quiet", "--keep-activations", str(tmp_path / "acts")])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"tiny.csv", "tiny.md", "tiny.png"}
    rows = list(csv.DictReader((out / "tiny.csv").open()))
    assert [(r["representation"], int(r["layer"])) for r in rows] == [
        ("hidden", 0),
        ("hidden", 1),
        ("hidden", 2),
        ("ffnn", 1),
        ("ffnn", 2),
    ]
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert float(rows[0]["accuracy"]) > 0.9  # the embedding alone identifies these words' tags
    assert (out / "tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| layer | hidden acc |" in capsys.readouterr().out
    assert np.load(tmp_path / "acts" / "ffnn.npy").shape == (2, 280, 64)
