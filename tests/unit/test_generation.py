"""Generation: greedy equals Hugging Face's own greedy decoding; sampling is reproducible by seed."""

from __future__ import annotations

import pytest
import torch

from ecco_engine import ChatMessage, Explainer, ExplainRequest, GenerationParams
from tiny_models import ARCHITECTURES, tiny_model, tiny_tokenizer


def generate(model, **kwargs):
    prompt = kwargs.pop("prompt", "The capital of France is")
    messages = kwargs.pop("messages", ())
    request = ExplainRequest(
        prompt=None if messages else prompt, messages=messages, generation=GenerationParams(**kwargs)
    )
    return Explainer(model, tiny_tokenizer()).generate(request)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_greedy_equals_huggingface_generate(arch):
    model = tiny_model(arch)
    tok = tiny_tokenizer()
    ours = generate(model, max_new_tokens=8)
    ids = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        theirs = model.generate(
            ids, max_new_tokens=8, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
        )
    expected = theirs[0, ids.shape[1] :].tolist()
    assert ours.generated_ids == expected
    assert ours.finish_reason == ("eos" if expected[-1] == tok.eos_token_id else "length")


def test_same_seed_same_text_other_seed_other_text():
    model = tiny_model("llama", seed=11)
    a = generate(model, max_new_tokens=12, do_sample=True, temperature=1.5, seed=7)
    b = generate(model, max_new_tokens=12, do_sample=True, temperature=1.5, seed=7)
    others = {
        tuple(generate(model, max_new_tokens=12, do_sample=True, temperature=1.5, seed=s).generated_ids)
        for s in range(8, 12)
    }
    assert a.generated_ids == b.generated_ids
    assert others - {tuple(a.generated_ids)}, "different seeds never changed the sampled text"


def test_top_k_one_is_greedy():
    model = tiny_model("gpt2", seed=12)
    greedy = generate(model, max_new_tokens=6)
    sampled = generate(model, max_new_tokens=6, do_sample=True, top_k=1, seed=3)
    assert sampled.generated_ids == greedy.generated_ids


def test_tiny_top_p_is_greedy():
    model = tiny_model("qwen2", seed=13)
    greedy = generate(model, max_new_tokens=6)
    sampled = generate(model, max_new_tokens=6, do_sample=True, top_p=1e-6, seed=5)
    assert sampled.generated_ids == greedy.generated_ids


def test_stop_string_ends_generation():
    model = tiny_model("gpt2", seed=0)  # greedy text is " is is is ..."
    full = generate(model, max_new_tokens=8)
    assert full.generated_text.count(" is") >= 3
    stopped = generate(model, max_new_tokens=8, stop=(" is is",))
    assert stopped.finish_reason == "stop"
    assert " is is" in stopped.generated_text
    assert len(stopped.generated_ids) < len(full.generated_ids)
    assert full.generated_ids[: len(stopped.generated_ids)] == stopped.generated_ids


def test_chat_messages_use_the_chat_template():
    model = tiny_model("llama")
    result = generate(model, messages=(ChatMessage("user", "hello there!"),), max_new_tokens=2)
    prompt_text = "".join(t.text for t in result.tokens[: result.prompt_length])
    assert prompt_text == "<|im_start|>user\nhello there!<|im_end|>\n<|im_start|>assistant\n"


def test_max_new_tokens_is_respected():
    model = tiny_model("opt")
    result = generate(model, max_new_tokens=3)
    assert len(result.generated_ids) <= 3
    assert len(result.tokens) == result.prompt_length + len(result.generated_ids)


def test_generation_does_not_build_a_graph():
    model = tiny_model("gpt2")
    for p in model.parameters():
        p.requires_grad_(True)  # even if the caller left them trainable, the Explainer freezes them
    generate(model, max_new_tokens=2)
    assert all(not p.requires_grad for p in model.parameters())
