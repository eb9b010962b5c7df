"""In-process feature extractor: word vectors of every layer for many sentences, in bounded memory.

For each labelled word (see ``alignment``) it records, at every layer:

* the **hidden state** of layer ``l`` (``hidden_states[l]``): layer 0 = the embedding output (input
  of block 0), layer ``b + 1`` = the output of block ``b`` (``n_layers + 1`` layers; the final norm
  of causal LMs is not applied, as in the engine's residual stream);
* the **FFNN activation** of block ``b`` (``b = 0..n_layers-1``): the input of the MLP
  down-projection, i.e. after the non-linearity (and gate) — the vector Ecco calls the neuron
  activations.

Layers and blocks are numbered as in docs/internals.md ("Layers and blocks").

Two model families:

* **Causal LMs** (``*ForCausalLM``): the engine's own capture, ``discover_layout`` +
  ``captured_mlp_activations`` + ``captured_residual_stream``.
* **Masked-LM / sentence encoders** (BERT, RoBERTa, ELECTRA, MiniLM, DistilBERT, loaded with
  ``AutoModel``): hidden states from ``output_hidden_states``; FFNN activations from a forward
  pre-hook on each layer's down-projection (BERT: ``layer.output.dense``, whose input is the GELU
  output of ``layer.intermediate``; DistilBERT: ``ffn.lin2``). The hooks live only inside a
  context manager and are removed in ``finally``.

Memory: sentences run in batches (right-padded, length-sorted); after each batch only the word
vectors are kept, written as float16 into two memory-mapped ``.npy`` files on disk,
``hidden.npy`` ``(n_layers + 1, n_words, d_model)`` and ``ffnn.npy`` ``(n_layers, n_words, d_ffn)``.
RAM holds one batch's activations, whatever the number of sentences; a probe later reads one
layer (a contiguous slice) at a time. Nothing is downloaded: models load with
``local_files_only=True``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecco_engine.errors import InvalidRequest, NonFiniteResult, UnsupportedModel
from ecco_engine.layout import get_module

from .alignment import AlignedSentence, align_sentence, word_vectors
from .conllu import Sentence

_ENCODER_BLOCK_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers")
_ENCODER_FFN_DOWN_PATHS = ("output.dense", "ffn.lin2", "mlp.fc2", "mlp.down_proj")
FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class WordFeatures:
    """Where the word vectors are, and which word each row is."""

    hidden_path: Path  # (n_layers + 1, n_words, d_model) float16
    ffnn_path: Path  # (n_layers, n_words, d_ffn) float16
    sentence_index: np.ndarray  # (n_words,) index into the sentences given
    word_index: np.ndarray  # (n_words,) word position inside its sentence
    n_unaligned_words: int  # words no token overlaps (not probed)
    n_tokens: int  # model tokens run, special tokens included
    seconds: float

    def hidden(self) -> np.ndarray:
        return np.load(self.hidden_path, mmap_mode="r")

    def ffnn(self) -> np.ndarray:
        return np.load(self.ffnn_path, mmap_mode="r")


def is_causal_lm(path: str | os.PathLike[str]) -> bool:
    """True if the folder's ``config.json`` names a ``*ForCausalLM`` architecture."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    return any(arch.endswith("ForCausalLM") for arch in (config.architectures or ()))


def load_for_probing(path: str | os.PathLike[str], kind: str = "auto") -> tuple[nn.Module, object, bool]:
    """``(model, tokenizer, causal)`` from a local folder; ``kind`` is ``auto``, ``causal`` or ``encoder``."""
    if kind not in ("auto", "causal", "encoder"):
        raise InvalidRequest("kind", f"must be auto, causal or encoder, got {kind!r}")
    causal = is_causal_lm(path) if kind == "auto" else kind == "causal"
    if causal:
        from ecco_engine.loading import load_model

        model, tokenizer = load_model(path)
        return model, tokenizer, True
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer, False


def encoder_ffn_modules(model: nn.Module) -> list[nn.Module]:
    """Each encoder layer's FFNN down-projection (its input is the activation vector)."""
    for path in _ENCODER_BLOCK_PATHS:
        for prefix in ("", f"{getattr(model, 'base_model_prefix', '')}."):
            blocks = get_module(model, (prefix + path).lstrip("."))
            if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
                for down in _ENCODER_FFN_DOWN_PATHS:
                    found = [get_module(block, down) for block in blocks]
                    if all(isinstance(m, nn.Linear) for m in found):
                        return [m for m in found if m is not None]
    raise UnsupportedModel(
        f"cannot find the encoder layers' FFNN down-projections of {type(model).__name__} "
        f"(tried {', '.join(_ENCODER_BLOCK_PATHS)} x {', '.join(_ENCODER_FFN_DOWN_PATHS)})"
    )


@contextmanager
def captured_encoder_ffn(modules: Sequence[nn.Module]) -> Iterator[list[list[torch.Tensor]]]:
    """Inside the block, ``store[k]`` collects the input ``(batch, seq, d_ffn)`` of ``modules[k]`` per forward."""
    store: list[list[torch.Tensor]] = [[] for _ in modules]

    def make_hook(k: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            store[k].append(args[0].detach().float().cpu())

        return hook

    handles = []
    try:
        for k, module in enumerate(modules):
            handles.append(module.register_forward_pre_hook(make_hook(k)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def _run_batch(model: nn.Module, causal: bool, ids: torch.Tensor, mask: torch.Tensor, ffn_modules, layout):
    """``(hidden list of (B, S, d), ffnn list of (B, S, f))`` float32 numpy for one padded batch."""
    with torch.no_grad():
        if causal:
            from ecco_engine.internals.hooks import captured_mlp_activations, captured_residual_stream

            with (
                captured_mlp_activations(layout) as ffn,
                captured_residual_stream(layout, range(ids.shape[1])) as res,
            ):
                model(input_ids=ids, attention_mask=mask, use_cache=False)
            hidden = [res.tensor(k).numpy() for k in range(layout.n_layers + 1)]
            ffnn = [ffn.tensor(k).numpy() for k in range(layout.n_layers)]
            return hidden, ffnn
        with captured_encoder_ffn(ffn_modules) as store:
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = [h.float().cpu().numpy() for h in out.hidden_states]
        return hidden, [torch.cat(chunks, dim=1).numpy() for chunks in store]


def _to_float16(values: np.ndarray, what: str) -> np.ndarray:
    peak = float(np.abs(values).max()) if values.size else 0.0
    if not np.isfinite(peak) or peak > FLOAT16_MAX:
        raise NonFiniteResult(f"{what}: |activation| {peak:.3g} does not fit float16 (max {FLOAT16_MAX:.0f})")
    return values.astype(np.float16)


def extract_word_features(
    model: nn.Module,
    tokenizer,
    sentences: Sequence[Sentence],
    out_dir: str | os.PathLike[str],
    *,
    causal: bool,
    subtoken: str,
    batch_size: int = 16,
    progress: bool = True,
) -> WordFeatures:
    """Run ``model`` over ``sentences`` in batches; write every layer's word vectors to ``out_dir``."""
    from tqdm import tqdm

    from ecco_engine.layout import discover_layout

    started = time.perf_counter()
    if batch_size < 1:
        raise InvalidRequest("batch_size", f"must be >= 1, got {batch_size}")
    layout = discover_layout(model) if causal else None
    ffn_modules = None if causal else encoder_ffn_modules(model)
    n_layers = layout.n_layers if layout is not None else len(ffn_modules or ())
    aligned: list[AlignedSentence] = [align_sentence(s, tokenizer) for s in sentences]
    kept = [a.kept_words for a in aligned]
    row_start = np.cumsum([0] + [len(k) for k in kept])
    n_words = int(row_start[-1])
    if n_words == 0:
        raise InvalidRequest("sentences", "no word could be aligned to a model token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hidden_mm = ffnn_mm = None
    order = sorted(range(len(aligned)), key=lambda i: len(aligned[i].input_ids))
    bar = tqdm(total=len(aligned), unit="sent", file=sys.stderr, disable=not progress, desc="extract")
    try:
        for b in range(0, len(order), batch_size):
            chunk = [i for i in order[b : b + batch_size] if kept[i]]
            bar.update(min(batch_size, len(order) - b))
            if not chunk:
                continue
            width = max(len(aligned[i].input_ids) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                n = len(aligned[i].input_ids)
                ids[row, :n] = torch.tensor(aligned[i].input_ids)
                mask[row, :n] = 1
            hidden, ffnn = _run_batch(model, causal, ids, mask, ffn_modules, layout)
            if hidden_mm is None:
                hidden_mm = np.lib.format.open_memmap(
                    out / "hidden.npy", mode="w+", dtype=np.float16, shape=(n_layers + 1, n_words, hidden[0].shape[-1])
                )
                ffnn_mm = np.lib.format.open_memmap(
                    out / "ffnn.npy", mode="w+", dtype=np.float16, shape=(n_layers, n_words, ffnn[0].shape[-1])
                )
            assert ffnn_mm is not None
            for row, i in enumerate(chunk):
                tokens = [aligned[i].word_tokens[w] for w in kept[i]]
                rows = slice(int(row_start[i]), int(row_start[i + 1]))
                for k, h in enumerate(hidden):
                    hidden_mm[k, rows] = _to_float16(word_vectors(h[row], tokens, subtoken), f"hidden depth {k}")
                for k, f in enumerate(ffnn):
                    ffnn_mm[k, rows] = _to_float16(word_vectors(f[row], tokens, subtoken), f"FFNN layer {k + 1}")
    finally:
        bar.close()
    assert hidden_mm is not None and ffnn_mm is not None
    hidden_mm.flush()
    ffnn_mm.flush()
    del hidden_mm, ffnn_mm
    sentence_index = np.concatenate([np.full(len(k), i, dtype=np.int64) for i, k in enumerate(kept)])
    word_index = np.concatenate([np.asarray(k, dtype=np.int64) for k in kept])
    return WordFeatures(
        hidden_path=out / "hidden.npy",
        ffnn_path=out / "ffnn.npy",
        sentence_index=sentence_index,
        word_index=word_index,
        n_unaligned_words=sum(len(s.words) for s in sentences) - n_words,
        n_tokens=sum(len(a.input_ids) for a in aligned),
        seconds=time.perf_counter() - started,
    )
