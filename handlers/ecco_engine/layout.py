"""Find the parts of a causal LM the engine needs, from the model's structure, not its checkpoint.

``ModelLayout`` names the token embedding, the decoder blocks, each block's MLP down-projection
(whose *input* is the FFNN neuron activation vector), the final norm and the unembedding.
Known families are found by the usual attribute names (GPT-2, Llama, Mistral, Qwen2, Gemma, Phi,
GPT-NeoX, OPT, Falcon, GPT-J, BLOOM ...); anything else takes a ``LayoutOverride`` of dotted paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import UnsupportedModel

# Dotted paths tried in order, relative to the model (blocks, final norm) or to one block (mlp).
_BLOCK_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen2, Gemma, Phi-3, Phi
    "transformer.h",  # GPT-2, GPT-J, Falcon, BLOOM
    "gpt_neox.layers",  # GPT-NeoX, Pythia
    "model.decoder.layers",  # OPT
    "transformer.blocks",  # MPT
    "model.language_model.layers",  # multimodal wrappers
)
_FINAL_NORM_PATHS = (
    "model.norm",
    "model.final_layernorm",  # Phi
    "transformer.ln_f",
    "gpt_neox.final_layer_norm",
    "model.decoder.final_layer_norm",  # OPT
    "transformer.norm_f",
    "model.language_model.norm",
)
_MLP_DOWN_PATHS = (
    "mlp.down_proj",  # Llama, Mistral, Qwen2, Gemma, Phi-3
    "mlp.c_proj",  # GPT-2
    "mlp.fc2",  # Phi
    "mlp.dense_4h_to_h",  # GPT-NeoX, Falcon, BLOOM
    "mlp.fc_out",  # GPT-J
    "fc2",  # OPT
    "ffn.down_proj",  # MPT
    "feed_forward.w2",
)


def get_module(root: nn.Module, path: str) -> nn.Module | None:
    """The submodule at a dotted path (``"model.layers"``, ``"mlp.down_proj"``), or None."""
    module: object = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module if isinstance(module, nn.Module) else None


@dataclass(frozen=True)
class LayoutOverride:
    """Dotted paths for models the discovery does not know. Any field left None is discovered."""

    blocks: str | None = None  # relative to the model, a ModuleList of decoder blocks
    mlp_down: str | None = None  # relative to each block
    final_norm: str | None = None  # relative to the model


@dataclass(frozen=True)
class ModelLayout:
    """The modules of one loaded model that the engine reads or hooks."""

    embedding: nn.Embedding
    blocks: tuple[nn.Module, ...]
    mlp_down: tuple[nn.Module, ...]  # one per block; its input is the FFNN activation vector
    final_norm: nn.Module
    unembedding: nn.Module
    paths: dict[str, str]  # where each part was found, for error messages and logs

    @property
    def n_layers(self) -> int:
        return len(self.blocks)


def _first(root: nn.Module, candidates: tuple[str, ...]) -> tuple[str, nn.Module] | None:
    for path in candidates:
        module = get_module(root, path)
        if module is not None:
            return path, module
    return None


def discover_layout(model: nn.Module, override: LayoutOverride | None = None) -> ModelLayout:
    """Map ``model`` onto a ``ModelLayout`` or raise ``UnsupportedModel`` naming what is missing."""
    override = override or LayoutOverride()
    missing: list[str] = []
    paths: dict[str, str] = {}

    embedding = getattr(model, "get_input_embeddings", lambda: None)()
    if not isinstance(embedding, nn.Embedding):
        missing.append("token embedding (get_input_embeddings() returned no nn.Embedding)")
    unembedding = getattr(model, "get_output_embeddings", lambda: None)()
    if unembedding is None:
        missing.append("unembedding (get_output_embeddings() returned None: not a causal LM head?)")

    found = _first(model, (override.blocks,) if override.blocks else _BLOCK_PATHS)
    blocks: tuple[nn.Module, ...] = ()
    if found is None or not isinstance(found[1], nn.ModuleList) or len(found[1]) == 0:
        tried = override.blocks or ", ".join(_BLOCK_PATHS)
        missing.append(f"decoder blocks (a non-empty ModuleList at {tried})")
    else:
        paths["blocks"], blocks = found[0], tuple(found[1])

    mlp_down: list[nn.Module] = []
    for i, block in enumerate(blocks):
        hit = _first(block, (override.mlp_down,) if override.mlp_down else _MLP_DOWN_PATHS)
        if hit is None:
            tried = override.mlp_down or ", ".join(_MLP_DOWN_PATHS)
            missing.append(f"MLP down-projection of block {i} (tried {tried})")
            break
        paths.setdefault("mlp_down", hit[0])
        mlp_down.append(hit[1])

    norm_hit = _first(model, (override.final_norm,) if override.final_norm else _FINAL_NORM_PATHS)
    if norm_hit is None:
        tried = override.final_norm or ", ".join(_FINAL_NORM_PATHS)
        missing.append(f"final norm (tried {tried})")
    else:
        paths["final_norm"] = norm_hit[0]

    if missing:
        name = type(model).__name__
        raise UnsupportedModel(
            f"cannot map {name} onto the engine's layout; not found: "
            + "; ".join(missing)
            + ". Pass a LayoutOverride with dotted paths for this architecture."
        )
    assert isinstance(embedding, nn.Embedding) and unembedding is not None and norm_hit is not None
    return ModelLayout(
        embedding=embedding,
        blocks=blocks,
        mlp_down=tuple(mlp_down),
        final_norm=norm_hit[1],
        unembedding=unembedding,
        paths=paths,
    )
