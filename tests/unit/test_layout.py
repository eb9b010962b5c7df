"""Model parts found from the model's structure; unsupported models fail at load, naming what is missing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ecco_engine import LayoutOverride, UnsupportedModel, discover_layout
from tiny_models import ARCHITECTURES, tiny_model


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_family_maps_onto_the_layout(arch):
    model = tiny_model(arch)
    layout = discover_layout(model)
    assert layout.n_layers == model.config.num_hidden_layers
    assert len(layout.mlp_down) == layout.n_layers
    assert layout.embedding is model.get_input_embeddings()
    assert layout.unembedding is model.get_output_embeddings()
    # the down-projection's input width is the FFNN width, its output the residual width
    down = layout.mlp_down[0]
    assert isinstance(down, nn.Module)
    hidden = model.get_input_embeddings().weight.shape[1]
    out = down(torch.zeros(1, _in_features(down)))
    assert out.shape[-1] == hidden


def _in_features(module: nn.Module) -> int:
    weight = module.weight
    # GPT-2 uses Conv1D (weight: in x out); Linear stores out x in
    return weight.shape[0] if type(module).__name__ == "Conv1D" else weight.shape[1]


def test_final_norm_is_the_models_own():
    model = tiny_model("llama")
    assert discover_layout(model).final_norm is model.model.norm
    gpt2 = tiny_model("gpt2")
    assert discover_layout(gpt2).final_norm is gpt2.transformer.ln_f


class Exotic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.stack = nn.ModuleList([nn.ModuleDict({"ffn": nn.Linear(8, 4)}) for _ in range(2)])
        self.last_norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10)

    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return self.head


def test_unknown_structure_names_what_is_missing():
    with pytest.raises(UnsupportedModel) as error:
        discover_layout(Exotic())
    message = str(error.value)
    assert "decoder blocks" in message and "final norm" in message and "LayoutOverride" in message


def test_override_maps_an_exotic_model():
    model = Exotic()
    layout = discover_layout(model, LayoutOverride(blocks="stack", mlp_down="ffn", final_norm="last_norm"))
    assert layout.n_layers == 2
    assert layout.mlp_down[1] is model.stack[1]["ffn"]
    assert layout.final_norm is model.last_norm


def test_wrong_override_path_is_named():
    with pytest.raises(UnsupportedModel, match="no_such_path"):
        discover_layout(tiny_model("llama"), LayoutOverride(final_norm="no_such_path"))
