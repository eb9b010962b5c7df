"""Load a local causal LM (a Hugging Face folder, or a GGUF file) for the engine. Never downloads."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .errors import UnsupportedModel

#: the model dtypes a server may name (model-config.yaml ``dtype``)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(setting: str | None, gpu_id: int | str | None = None) -> torch.device:
    """The device named by a server setting: ``auto`` (default) is the GPU TorchServe assigned
    (``gpu_id``) or the first GPU when CUDA is available, else the CPU; ``cpu``; ``cuda`` (the assigned
    GPU, or GPU 0); ``cuda:N``. Naming a GPU where CUDA is not available is an error at start-up."""
    setting = (setting or "auto").strip().lower()
    cuda = torch.cuda.is_available()
    index = int(gpu_id) if gpu_id is not None and str(gpu_id).strip() != "" else 0
    if setting == "auto":
        return torch.device("cuda", index) if cuda else torch.device("cpu")
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda" or setting.startswith("cuda:"):
        if not cuda:
            raise ValueError(f"device {setting!r}: CUDA is not available on this machine (use 'auto' or 'cpu')")
        device = torch.device(setting if ":" in setting else f"cuda:{index}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {setting!r}: this machine has {torch.cuda.device_count()} GPU(s)")
        return device
    raise ValueError(f"device {setting!r}: must be auto, cpu, cuda or cuda:N")


def model_dtype(name: str | None) -> torch.dtype:
    """The model dtype named by a server setting (default float32)."""
    try:
        return DTYPES[name or "float32"]
    except KeyError:
        raise ValueError(f"dtype {name!r}: must be one of {', '.join(DTYPES)}") from None


def load_model(
    path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> tuple[nn.Module, object]:
    """``(model, tokenizer)`` from a local folder (safetensors + tokenizer files) or a ``.gguf`` file,
    the model on ``device`` in ``dtype``.

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
    nn.Module.to(model, torch.device(device))  # (transformers wraps `to` with a signature mypy misreads)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer
