"""save_adapters / load_adapters: only coefficients, positions and config; exact round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tests.adapter_cases import BASIS_SELECTOR, TinyNet, adapt, make_config, randomize_coefficients, tiny_input
from spectral_peft import adapters, get_config, inject, load_adapters, save_adapters


@pytest.mark.parametrize("basis, selector", BASIS_SELECTOR)
def test_save_then_load_into_a_fresh_model_gives_identical_outputs(basis, selector, tmp_path):
    model = adapt(TinyNet(), make_config(basis, selector))
    randomize_coefficients(model)
    x = tiny_input()
    expected = model(x)
    save_adapters(model, tmp_path / "adapter")
    restored = load_adapters(TinyNet(), tmp_path / "adapter")
    assert torch.equal(restored(x), expected)
    assert get_config(restored) == get_config(model)
    for name, adapter in adapters(restored).items():
        assert torch.equal(adapter.positions, adapters(model)[name].positions)


def test_saved_files_hold_only_coefficients_positions_and_config(tmp_path):
    model = inject(TinyNet(), make_config("wavelet", "mixed", basis_options={"wavelet": "haar"}))
    save_adapters(model, tmp_path)
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert sorted(tensors) == ["down.coefficients", "down.positions", "up.coefficients", "up.positions"]
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["config"]["basis_options"] == {"wavelet": "haar"}
    assert meta["layers"]["up"] == {"shape": [32, 16], "n": 20}


def test_loading_uses_stored_positions_not_a_fresh_selection(tmp_path):
    # energy selection depends on W0: load into a model with other weights, positions must stay
    model = inject(TinyNet(seed=0), make_config("dct", "energy"))
    save_adapters(model, tmp_path)
    restored = load_adapters(TinyNet(seed=5), tmp_path)
    assert torch.equal(restored.up.positions, model.up.positions)


def test_loading_into_a_model_with_other_layer_names_is_an_error(tmp_path):
    save_adapters(inject(TinyNet(), make_config("dct", "energy")), tmp_path)

    class Renamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.Linear(16, 32)
            self.other = nn.Linear(32, 16)

    with pytest.raises(ValueError, match=r"saved but not in the model: \['down'\]"):
        load_adapters(Renamed(), tmp_path)


def test_loading_into_a_model_with_other_shapes_is_an_error(tmp_path):
    save_adapters(inject(TinyNet(), make_config("dct", "energy")), tmp_path)
    wrong = TinyNet()
    wrong.up = nn.Linear(16, 8)
    with pytest.raises(ValueError, match=r"layer 'up' is 8x16 but the saved adapter is for \[32, 16\]"):
        load_adapters(wrong, tmp_path)


def test_loading_from_a_folder_without_an_adapter_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not hold a saved adapter"):
        load_adapters(TinyNet(), tmp_path)


def test_saving_a_model_without_adapters_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no spectral adapters"):
        save_adapters(TinyNet(), tmp_path)
