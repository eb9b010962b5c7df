"""The in-process extractor on tiny random models: the right vectors, batched = single, no hooks left."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecco_engine.internals import captured_mlp_activations, count_hooks
from ecco_engine.layout import discover_layout
from ecco_tools.probing import parse_conllu
from ecco_tools.probing.extract import captured_encoder_ffn, encoder_ffn_modules, extract_word_features
from tiny_models import tiny_model, tiny_tokenizer

TEXTS = [
    "The capital of France is Paris .",
    "A quick brown fox jumps over the lazy dog while the cat sleeps .",
    "Language models predict the next token .",
    "hello there !",
]
F16 = dict(rtol=2e-3, atol=2e-3)  # the extractor stores float16: ~3 significant digits


def sentences():
    lines = []
    for text in TEXTS:
        words = text.split()
        for i, w in enumerate(words):
            misc = "SpaceAfter=No" if i + 1 < len(words) and words[i + 1] in ".!" else "_"
            lines.append(f"{i + 1}\t{w}\t_\tX\tX\t_\t0\tdep\t_\t{misc}\n")
        lines.append("\n")
    return list(parse_conllu(lines))


def tiny_bert():
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(tiny_tokenizer()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tiny_tokenizer().pad_token_id,
    )
    torch.manual_seed(0)
    return BertModel(config).eval()


def test_encoder_ffn_activation_is_the_gelu_output_and_hooks_are_removed():
    model = tiny_bert()
    modules = encoder_ffn_modules(model)
    assert modules == [layer.output.dense for layer in model.encoder.layer]
    ids = torch.tensor([tiny_tokenizer().encode(TEXTS[0])])
    seen = []
    handle = model.encoder.layer[1].intermediate.register_forward_hook(lambda _m, _a, out: seen.append(out))
    before = count_hooks(model)
    with captured_encoder_ffn(modules) as store:
        model(input_ids=ids)
    handle.remove()
    assert count_hooks(model) == before - 1  # only our reference hook was removed by us
    torch.testing.assert_close(store[1][0], seen[0], rtol=0, atol=0)  # input of output.dense == GELU output
    with pytest.raises(RuntimeError), captured_encoder_ffn(modules):
        raise RuntimeError("boom")
    assert count_hooks(model) == 0


@pytest.mark.parametrize("arch", ["bert", "llama", "gpt2"])
def test_word_vectors_match_a_direct_forward_and_batching_changes_nothing(arch, tmp_path):
    tok = tiny_tokenizer()
    model = tiny_bert() if arch == "bert" else tiny_model(arch)
    causal = arch != "bert"
    data = sentences()
    with torch.no_grad():  # transformers may install its own (persistent) hooks for output_hidden_states
        model(input_ids=torch.tensor([tok.encode(TEXTS[0])]), output_hidden_states=True)
    hooks = count_hooks(model)
    batched = extract_word_features(
        model, tok, data, tmp_path / "b", causal=causal, subtoken="last", batch_size=3, progress=False
    )
    single = extract_word_features(
        model, tok, data, tmp_path / "s", causal=causal, subtoken="last", batch_size=1, progress=False
    )
    assert count_hooks(model) == hooks  # ours are all removed
    n_words = sum(len(s.words) for s in data)
    hidden, ffnn = batched.hidden(), batched.ffnn()
    assert hidden.shape[:2] == (3, n_words) and ffnn.shape[:2] == (2, n_words) and hidden.dtype == np.float16
    np.testing.assert_allclose(hidden.astype(np.float32), single.hidden().astype(np.float32), **F16)
    np.testing.assert_allclose(ffnn.astype(np.float32), single.ffnn().astype(np.float32), **F16)
    assert batched.sentence_index.tolist() == [i for i, s in enumerate(data) for _ in s.words]

    # reference: one sentence alone, straight from the model (hidden states) and a plain hook (FFNN)
    from ecco_tools.probing import align_sentence

    k = 1
    aligned = align_sentence(data[k], tok)
    ids = torch.tensor([aligned.input_ids])
    last = [t[-1] for t in aligned.word_tokens]
    rows = batched.sentence_index == k
    with torch.no_grad():
        if causal:
            layout = discover_layout(model)
            with captured_mlp_activations(layout) as store:
                out = model(input_ids=ids, output_hidden_states=True)
            ffn_ref = store.tensor(1)[0, last].numpy()
            hidden_ref = out.hidden_states[1][0, last].numpy()  # output of block 1 (not the last: no final norm)
        else:
            with captured_encoder_ffn(encoder_ffn_modules(model)) as store:
                out = model(input_ids=ids, output_hidden_states=True)
            ffn_ref = store[1][0][0, last].numpy()
            hidden_ref = out.hidden_states[1][0, last].numpy()
    np.testing.assert_allclose(ffnn[1][rows].astype(np.float32), ffn_ref, **F16)
    np.testing.assert_allclose(hidden[1][rows].astype(np.float32), hidden_ref, **F16)
