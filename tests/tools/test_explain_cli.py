"""``python -m ecco_tools.explain``: the engine in-process on a saved tiny model folder."""

from __future__ import annotations

from ecco_tools.explain import main
from tiny_models import tiny_model, tiny_tokenizer


def test_explain_prints_one_row_per_generated_token(tmp_path, capsys):
    tiny_model("llama").save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    argv = ["--model", str(tmp_path), "--prompt", "the cat sat", "--max-new-tokens", "3", "--methods", "grad_x_input"]
    assert main([*argv, "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "method=grad_x_input target=probability" in out
    rows = [line for line in out.splitlines() if line.startswith("  [")]
    assert len(rows) == 3 and all(row.count(":") == 2 for row in rows)  # 3 generated tokens, 2 sources each


def test_explain_reports_a_bad_request_without_a_traceback(tmp_path, capsys):
    tiny_model("llama").save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    assert main(["--model", str(tmp_path), "--prompt", "the cat", "--max-new-tokens", "0"]) == 2
    assert "max_new_tokens" in capsys.readouterr().err
