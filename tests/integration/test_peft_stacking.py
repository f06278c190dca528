"""Spectral adapters and Hugging Face peft adapters in one model, in both orders."""

from __future__ import annotations

import peft
import pytest
import torch

from tests.adapter_cases import TinyNet, make_config, randomize_coefficients, tiny_input
from spectral_peft import adapters, inject, mark_trainable, merge_and_unload


def _trainable(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _lora_delta(layer) -> torch.Tensor:
    return layer.get_delta_weight("default")


def _randomize_lora(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def test_inject_into_a_peft_model_keeps_lora_trainable_and_both_updates_add_up():
    model = peft.get_peft_model(TinyNet(), peft.LoraConfig(r=2, lora_alpha=4, target_modules=["up"]))
    lora = _trainable(model)
    assert lora == {"base_model.model.up.lora_A.default.weight", "base_model.model.up.lora_B.default.weight"}
    inject(model, make_config("dct", "energy", target_modules=["up.base_layer", "down"]))
    assert _trainable(model) == lora | {"base_model.model.up.base_layer.coefficients", "base_model.model.down.coefficients"}

    _randomize_lora(model)
    randomize_coefficients(model)
    net = model.base_model.model
    x = tiny_input()
    w_up = net.up.base_layer.base_weight() + net.up.base_layer.delta_weight() + _lora_delta(net.up)
    w_down = net.down.base_weight() + net.down.delta_weight()
    hidden = torch.nn.functional.gelu(x @ w_up.T + net.up.base_layer.bias)
    expected = net.head(hidden @ w_down.T + net.down.bias)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    # unloading ours leaves peft's LoRA in place, and the outputs unchanged
    merge_and_unload(model)
    assert not adapters(model) and isinstance(net.up, peft.tuners.lora.Linear)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_targeting_a_peft_wrapper_says_to_target_the_layer_inside_it():
    model = peft.get_peft_model(TinyNet(), peft.LoraConfig(r=2, target_modules=["up"]))
    with pytest.raises(TypeError, match=r"matches 'base_model.model.up', a peft adapter wrapper \(peft.tuners.lora.layer.Linear\)"
                                        r".*'base_model.model.up.base_layer': target that instead, e.g. "
                                        r"target_modules=\['up.base_layer'\]"):
        inject(model, make_config("dct", "energy", target_modules=["up", "down"]))


def test_peft_on_top_freezes_our_coefficients_and_mark_trainable_restores_them():
    model = inject(TinyNet(), make_config("dct", "energy", target_modules=["up", "down"], modules_to_save=["head"]))
    model = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["up.base_layer"]))
    ours = {"base_model.model.up.coefficients", "base_model.model.down.coefficients",
            "base_model.model.head.weight", "base_model.model.head.bias"}
    assert not _trainable(model) & ours  # peft's get_peft_model freezes everything that is not its own
    mark_trainable(model)
    assert ours <= _trainable(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    _randomize_lora(model)  # lora_B starts at zero, which would leave lora_A without gradient
    model(tiny_input()).pow(2).mean().backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if name in before and not torch.equal(p, before[name])}
    assert ours <= changed and any("lora_A" in name for name in changed)
