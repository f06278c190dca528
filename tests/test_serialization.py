"""save_adapters / load_adapters: only coefficients, positions and config; exact round trip."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tests.adapter_cases import BASIS_SELECTOR, IN, OUT, TinyNet, adapt, make_config, randomize_coefficients, tiny_input
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


# ---------------------------------------------------------------- modules_to_save
def _train_a_step(model, seed=0):
    x = tiny_input(seed=seed)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(x).pow(2).mean().backward()
    optimizer.step()


def test_a_trained_head_in_modules_to_save_is_saved_and_reloaded_with_identical_logits(tmp_path):
    model = inject(TinyNet(), make_config("dht", "mixed", modules_to_save=["head"]))
    _train_a_step(model)
    assert not torch.equal(model.head.weight, TinyNet().head.weight)  # the head trained
    x = tiny_input()
    save_adapters(model, tmp_path)
    assert "head.weight" in load_file(str(tmp_path / "adapter_model.safetensors"))
    restored = load_adapters(TinyNet(), tmp_path)
    assert torch.equal(restored(x), model(x))
    assert restored.head.weight.requires_grad  # and it keeps training after reloading


# ---------------------------------------------------------------- loading into an adapted model
def test_loading_into_a_model_with_matching_adapters_copies_the_coefficients(tmp_path):
    config = make_config("dct", "mixed")
    model = inject(TinyNet(), config)
    randomize_coefficients(model)
    save_adapters(model, tmp_path)
    target = inject(TinyNet(), config)
    assert load_adapters(target, tmp_path) is target
    assert torch.equal(target(tiny_input()), model(tiny_input()))
    assert torch.equal(target.up.coefficients, model.up.coefficients)


def test_loading_into_adapters_with_other_positions_basis_or_alpha_says_what_differs(tmp_path):
    save_adapters(inject(TinyNet(), make_config("dct", "mixed")), tmp_path)
    other_seed = inject(TinyNet(), make_config("dct", "mixed", seed=9))
    with pytest.raises(ValueError, match=r"(?s)do not match the saved adapter.*layer 'down': positions differ at \d+ of 20 "
                                         r"entries.*layer 'up': positions differ"):
        load_adapters(other_seed, tmp_path)
    other_basis = inject(TinyNet(), make_config("dht", "mixed"))
    with pytest.raises(ValueError, match=r"layer 'down': the model's basis is .*dht.*, the saved adapter's .*dct"):
        load_adapters(other_basis, tmp_path)
    other_alpha = inject(TinyNet(), make_config("dct", "mixed", alpha=3.0))
    with pytest.raises(ValueError, match=r"layer 'down': the model's alpha is 3.0, the saved adapter's 2.0"):
        load_adapters(other_alpha, tmp_path)
    fewer = inject(TinyNet(), make_config("dct", "mixed", target_modules=["up"]))
    with pytest.raises(ValueError, match=r"saved but not adapted in the model: \['down'\]"):
        load_adapters(fewer, tmp_path)


# ---------------------------------------------------------------- integrity
def _edit_config(folder, **changes):
    meta = json.loads((folder / "adapter_config.json").read_text())
    meta["config"].update(changes)
    (folder / "adapter_config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("field, value", [("basis", "dht"), ("n", 12), ("alpha", 1.0),
                                          ("basis_options", {"fourierft_compat": True})])
def test_an_edited_config_file_is_refused_naming_the_field(field, value, tmp_path):
    save_adapters(inject(TinyNet(), make_config("dft", "random")), tmp_path)
    _edit_config(tmp_path, **{field: value})
    with pytest.raises(ValueError, match=rf"{field} is .* in the config file but the weights were saved with {field}="):
        load_adapters(TinyNet(), tmp_path)


def test_an_edited_layer_size_is_refused(tmp_path):
    save_adapters(inject(TinyNet(), make_config("dft", "random")), tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    meta["layers"]["up"]["n"] = 19
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"layer 'up' says n=19 but the weights file holds 20"):
        load_adapters(TinyNet(), tmp_path)


def test_non_finite_coefficients_are_refused_at_load(tmp_path):
    model = inject(TinyNet(), make_config("dct", "energy"))
    with torch.no_grad():
        model.up.coefficients[2] = float("inf")
    save_adapters(model, tmp_path)
    with pytest.raises(ValueError, match=r"'up.coefficients' has 1 NaN or infinite value\(s\) of 20"):
        load_adapters(TinyNet(), tmp_path)


def test_the_fingerprint_holds_the_config_and_every_tensor_shape(tmp_path):
    from safetensors import safe_open

    model = inject(TinyNet(), make_config("dct", "energy", modules_to_save=["head"]))
    save_adapters(model, tmp_path)
    with safe_open(str(tmp_path / "adapter_model.safetensors"), framework="pt") as handle:
        fingerprint = json.loads(handle.metadata()["spectral_peft_fingerprint"])
    assert fingerprint["config"] == get_config(model).to_dict()
    assert fingerprint["shapes"] == {"up.coefficients": [20], "up.positions": [20], "down.coefficients": [20],
                                     "down.positions": [20], "head.weight": [OUT, IN], "head.bias": [OUT]}


def test_an_adapter_saved_before_fingerprints_still_loads_with_a_warning(tmp_path):
    from safetensors.torch import save_file

    model = inject(TinyNet(), make_config("dct", "energy"))
    randomize_coefficients(model)
    save_adapters(model, tmp_path)
    save_file(load_file(str(tmp_path / "adapter_model.safetensors")), str(tmp_path / "adapter_model.safetensors"))
    with pytest.warns(UserWarning, match="carries no fingerprint"):
        restored = load_adapters(TinyNet(), tmp_path)
    assert torch.equal(restored(tiny_input()), model(tiny_input()))
