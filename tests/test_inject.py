"""inject / merge_and_unload on every basis × selector, target matching, determinism, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tests.adapter_cases import BASIS_SELECTOR, IN, OUT, TinyNet, adapt, make_config, randomize_coefficients, tiny_input
from spectral_peft import (
    SpectralAdapter, SpectralConfig, adapters, get_config, inject, mark_trainable, merge_and_unload,
    print_trainable_parameters, trainable_summary,
)
from spectral_peft.selectors import Selector


@pytest.mark.parametrize("basis, selector", BASIS_SELECTOR)
def test_merge_and_unload_returns_a_plain_model_with_the_same_outputs(basis, selector):
    model = adapt(TinyNet(), make_config(basis, selector))
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
        model = adapt(TinyNet(seed=seed_weights), config)
        return {name: a.positions.clone() for name, a in adapters(model).items()}

    config = make_config(basis, selector)
    first = positions(config)
    assert all(torch.equal(first[k], v) for k, v in positions(config).items())
    reseeded = positions(config.replace(seed=4))
    new_weights = positions(config, seed_weights=1)
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    declared = config.build_selector()
    # the seed matters exactly for selectors that draw at random (in select or in their scores)
    assert same(first, reseeded) is not (declared.uses_generator or declared.seeded_scores)
    # W0 matters for the default energy scores and for data-driven ones (gradients depend on W0)
    energy_scores = declared.needs_scores and type(declared).layer_scores is Selector.layer_scores
    assert same(first, new_weights) is not (energy_scores or declared.needs_data)


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
    with pytest.raises(ValueError, match=r"layer 'head' \(6x16\): n must be an integer with 1 <= n <= M\*N = 6\*16 = 96"):
        inject(TinyNet(), make_config("dct", "energy", n=97, target_modules=["head"]))


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


# ---------------------------------------------------------------- modules_to_save and the summary
def test_modules_to_save_stay_trainable_and_everything_else_but_coefficients_is_frozen():
    model = inject(TinyNet(), make_config("dct", "energy", target_modules=["up"], modules_to_save=["head"]))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"up.coefficients", "head.weight", "head.bias"}


def test_trainable_summary_counts_coefficients_saved_modules_and_all_parameters(capsys):
    model = inject(TinyNet(), make_config("dct", "energy", modules_to_save=["head"]))
    head = OUT * IN + OUT
    total = sum(p.numel() for p in TinyNet().parameters()) + 2 * 20
    expected = (f"trainable params: {40 + head:,} (spectral coefficients 40, modules_to_save {head}, other 0) "
                f"|| all params: {total:,} || trainable%: {100 * (40 + head) / total:.4f}")
    assert trainable_summary(model) == expected
    print_trainable_parameters(model)
    assert capsys.readouterr().out.strip() == expected


def test_modules_to_save_matching_nothing_lists_module_names():
    with pytest.raises(ValueError, match=r"modules_to_save=\('classifier',\) matches no module; .*: down, head, up"):
        inject(TinyNet(), make_config("dct", "energy", modules_to_save=["classifier"]))


def test_a_module_cannot_be_both_adapted_and_saved_whole():
    with pytest.raises(ValueError, match=r"modules_to_save matches 'up', which is or contains the targeted layer 'up'"):
        inject(TinyNet(), make_config("dct", "energy", modules_to_save=["up"]))


def test_mark_trainable_restores_what_another_library_froze():
    model = inject(TinyNet(), make_config("dct", "energy", modules_to_save=["head"]))
    model.requires_grad_(False)
    mark_trainable(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "up.coefficients", "down.coefficients", "head.weight", "head.bias"}


# ---------------------------------------------------------------- tied weights
class Tied(nn.Module):
    """Two linear layers (and optionally an embedding) that share one weight tensor."""

    def __init__(self, embedding: bool = False):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False)
        self.b.weight = self.a.weight
        if embedding:
            self.embed = nn.Embedding(8, 8)
            self.a.weight = self.embed.weight

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_two_targets_sharing_one_weight_are_refused():
    with pytest.raises(ValueError, match=r"layer 'a' shares its weight tensor with 'b.weight' \(tied weights\): both 'a' "
                                         r"and 'b' are targeted.*exclude_modules=\['a'\]"):
        inject(Tied(), SpectralConfig(basis="dct", selector="random", n=5, target_modules=["a", "b"]))


def test_a_target_tied_to_another_module_is_refused_and_one_excluded_target_is_not():
    with pytest.raises(ValueError, match=r"layer 'a' shares its weight tensor with 'embed.weight'.*would also change 'embed.weight'"):
        inject(Tied(embedding=True), SpectralConfig(basis="dct", selector="random", n=5, target_modules=["a"]))
    model = Tied()
    model.b.weight = nn.Parameter(model.a.weight.detach().clone())  # untied: allowed
    inject(model, SpectralConfig(basis="dct", selector="random", n=5, target_modules=["a", "b"]))
    assert sorted(adapters(model)) == ["a", "b"]


# ---------------------------------------------------------------- safe_merge
def test_safe_merge_refuses_a_non_finite_delta_and_leaves_every_weight_unchanged():
    model = inject(TinyNet(), make_config("dct", "energy"))
    randomize_coefficients(model)
    with torch.no_grad():
        model.down.coefficients[3] = float("nan")
    before = {name: a.base_layer.weight.clone() for name, a in adapters(model).items()}
    with pytest.raises(ValueError, match=r"layer 'down': ΔW contains NaN or inf.*no layer was merged"):
        merge_and_unload(model, safe_merge=True)
    for name, adapter in adapters(model).items():  # 'up' was merged first and has been unmerged again
        assert not adapter.merged
        torch.testing.assert_close(adapter.base_layer.weight, before[name], atol=1e-6, rtol=0)


def test_safe_merge_refuses_a_merged_weight_that_overflows():
    model = inject(TinyNet(dtype=torch.float16), make_config("identity", "energy", target_modules=["up"]))
    with torch.no_grad():
        model.up.coefficients.fill_(1e5)  # finite in float32, inf once added into a float16 weight
    with pytest.raises(ValueError, match=r"W0 \+ ΔW would contain NaN or inf"):
        model.up.merge(safe_merge=True)
    assert torch.isfinite(model.up.base_layer.weight).all() and not model.up.merged
    model.up.merge()  # without the check the overflow is written, as in peft
    assert not torch.isfinite(model.up.base_layer.weight).all()
