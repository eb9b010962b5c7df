"""Tiny random causal LMs and a tiny byte-level BPE tokenizer, built in-process (no downloads)."""

from __future__ import annotations

import functools

import torch

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "A quick brown fox jumps over the lazy dog while the cat sleeps.",
    "Language models predict the next token from the tokens before it.",
    "Integrated gradients attribute a prediction to the input features.",
    "User: hello there! Assistant: hi, how can I help you today?",
] * 4

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    """A ~300-token byte-level BPE tokenizer with eos/bos/pad/unk/mask and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _configs(vocab: int) -> dict[str, object]:
    from transformers import (
        GemmaConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        OPTConfig,
        PhiConfig,
        Qwen2Config,
    )

    small = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    return {
        "gpt2": GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=256),
        "llama": LlamaConfig(**small, num_key_value_heads=2, max_position_embeddings=256),
        "mistral": MistralConfig(**small, num_key_value_heads=2, max_position_embeddings=256),
        "qwen2": Qwen2Config(**small, num_key_value_heads=2, max_position_embeddings=256),
        "gemma": GemmaConfig(**small, num_key_value_heads=1, head_dim=8, max_position_embeddings=256),
        "phi": PhiConfig(**small, max_position_embeddings=256),
        "gpt_neox": GPTNeoXConfig(**small, max_position_embeddings=256),
        "opt": OPTConfig(
            vocab_size=vocab,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=256,
        ),
    }


ARCHITECTURES = ("gpt2", "llama", "mistral", "qwen2", "gemma", "phi", "gpt_neox", "opt")


def tiny_model(arch: str, seed: int = 0):
    """A randomly initialised fp32 causal LM of family ``arch`` sized for the tiny tokenizer."""
    from transformers import AutoModelForCausalLM

    tok = tiny_tokenizer()
    config = _configs(len(tok))[arch]
    config.bos_token_id = config.eos_token_id = tok.eos_token_id
    config.pad_token_id = tok.pad_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()
