"""Load a local causal LM (a Hugging Face folder, or a GGUF file) for the engine. Never downloads."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .errors import UnsupportedModel


def load_model(path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, object]:
    """``(model, tokenizer)`` from a local folder (safetensors + tokenizer files) or a ``.gguf`` file.

    The model is in eval mode with its parameters frozen. Loading is local-only
    (``local_files_only=True``): a missing file is an error here, never a download.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    kwargs: dict[str, object] = {"local_files_only": True}
    if path.is_file() and path.suffix == ".gguf":
        kwargs["gguf_file"] = path.name
        path = path.parent
    elif not path.is_dir():
        raise FileNotFoundError(f"no model folder or .gguf file at {path}")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except ValueError as error:  # unknown architecture / not a causal LM
        raise UnsupportedModel(f"cannot load a causal LM from {path}: {error}") from error
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer
