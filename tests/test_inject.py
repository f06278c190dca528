"""inject / merge_and_unload on every basis × selector, target matching, determinism, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.adapter_cases import BASIS_SELECTOR, TinyNet, make_config, randomize_coefficients, tiny_input
from spectral_peft import SpectralAdapter, SpectralConfig, adapters, get_config, inject, merge_and_unload


@pytest.mark.parametrize("basis, selector", BASIS_SELECTOR)
def test_merge_and_unload_returns_a_plain_model_with_the_same_outputs(basis, selector):
    model = inject(TinyNet(), make_config(basis, selector))
    randomize_coefficients(model)
    x = tiny_input()
    adapted = model(x)
    plain = merge_and_unload(model)
    assert not any(isinstance(m, SpectralAdapter) for m in plain.modules())
    assert type(plain.up) is nn.Linear
    torch.testing.assert_close(plain(x), adapted, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("basis, selector", BASIS_SELECTOR)
def test_positions_are_a_deterministic_function_of_weights_n_delta_and_seed(basis, selector):
    def positions(config, seed_weights=0):
        model = inject(TinyNet(seed=seed_weights), config)
        return {name: a.positions.clone() for name, a in adapters(model).items()}

    config = make_config(basis, selector)
    first = positions(config)
    assert all(torch.equal(first[k], v) for k, v in positions(config).items())
    reseeded = positions(config.replace(seed=4))
    new_weights = positions(config, seed_weights=1)
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    if selector == "energy":
        assert same(first, reseeded)  # no randomness at all
    else:
        assert not same(first, reseeded)
    if selector == "random":
        assert same(first, new_weights)
    else:
        assert not same(first, new_weights)  # the energy part depends on W0


def test_positions_are_stored_as_buffers_in_the_state_dict():
    model = inject(TinyNet(), make_config("dht", "mixed"))
    state = model.state_dict()
    assert torch.equal(state["up.positions"], model.up.positions)
    assert "up.positions" in dict(model.named_buffers())


def test_layers_of_one_shape_get_different_positions_unless_shared():
    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 16)

    config = SpectralConfig(basis="dct", selector="random", n=30, target_modules=["a", "b"])
    model = inject(Twin(), config)
    assert not torch.equal(model.a.positions, model.b.positions)
    shared = inject(Twin(), config.replace(share_positions=True))
    assert torch.equal(shared.a.positions, shared.b.positions)
    expected = torch.randperm(256, generator=torch.Generator().manual_seed(0))[:30]
    assert shared.a.positions.tolist() == sorted(expected.tolist())


def test_shared_energy_positions_rank_the_summed_energy_of_the_group():
    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False)

    model = Twin()
    with torch.no_grad():
        model.a.weight.zero_()
        model.b.weight.zero_()
        model.a.weight[0, 1] = 3.0
        model.b.weight[5, 2] = 2.0
        model.b.weight[4, 4] = 1.0
    inject(model, SpectralConfig(basis="identity", selector="energy", n=2, share_positions=True,
                                 target_modules=["a", "b"]))
    assert model.a.positions.tolist() == model.b.positions.tolist() == [1, 42]


def test_suffix_and_regex_targets_and_exclusions():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.value, self.key = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block(), Block()])

    by_suffix = inject(Net(), SpectralConfig(n=4, target_modules=["query", "value"], exclude_modules=["layers.0.value"]))
    assert sorted(adapters(by_suffix)) == ["layers.0.query", "layers.1.query", "layers.1.value"]
    by_regex = inject(Net(), SpectralConfig(n=4, target_modules=r"layers\.1\.(key|value)"))
    assert sorted(adapters(by_regex)) == ["layers.1.key", "layers.1.value"]
    assert get_config(by_regex).target_modules == r"layers\.1\.(key|value)"


def test_everything_but_the_coefficients_is_frozen():
    model = TinyNet()
    inject(model, make_config("dct", "energy", target_modules=["up"]))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"up.coefficients"}


def test_target_modules_matching_nothing_shows_existing_names():
    with pytest.raises(ValueError, match=r"matches no module\. Linear layers in this model end in: down, head, up"):
        inject(TinyNet(), make_config("dht", "energy", target_modules=["q_proj"]))


def test_target_matching_a_non_linear_module_is_an_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(TypeError, match=r"matches '1', a ReLU"):
        inject(model, SpectralConfig(n=2, target_modules=["0", "1"]))


def test_n_larger_than_a_layer_is_an_error_naming_the_layer():
    with pytest.raises(ValueError, match=r"layer 'head' \(6x24\): n must be an integer with 1 <= n <= M\*N = 6\*24 = 144"):
        inject(TinyNet(), make_config("dct", "energy", n=145, target_modules=["head"]))


def test_unsupported_shape_for_the_basis_names_the_layer():
    model = nn.Sequential(nn.Linear(6, 5))
    with pytest.raises(ValueError, match=r"layer '0' \(5x6\): wavelet basis needs both dimensions even"):
        inject(model, SpectralConfig(basis="wavelet", selector="random", n=3, target_modules=["0"]))


@pytest.mark.parametrize("selector", ["energy", "mixed"])
def test_non_finite_weights_are_rejected_by_energy_selection(selector):
    model = TinyNet()
    with torch.no_grad():
        model.up.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"layer 'up' has NaN or inf weights"):
        inject(model, make_config("dht", selector))


def test_random_selection_does_not_need_finite_weights():
    model = TinyNet()
    with torch.no_grad():
        model.up.weight[0, 0] = float("nan")
    inject(model, make_config("dht", "random"))


def test_injecting_twice_is_an_error():
    model = inject(TinyNet(), make_config("dht", "energy"))
    with pytest.raises(ValueError, match=r"already adapted: it has 2 spectral adapter\(s\).*use load_adapters\(model, path\)"):
        inject(model, make_config("dct", "energy"))


def test_merge_and_unload_without_adapters_is_an_error():
    with pytest.raises(ValueError, match="no spectral adapters"):
        merge_and_unload(TinyNet())


def test_inject_does_not_touch_a_deep_copy_of_the_model():
    base = TinyNet()
    twin = copy.deepcopy(base)
    inject(twin, make_config("dht", "energy"))
    assert type(base.up) is nn.Linear
