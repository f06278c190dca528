"""Data-driven selectors (gradient, learned, oracle, band) and the calibration API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from spectral_peft import (
    Calibration,
    SpectralConfig,
    adapters,
    get_basis,
    get_selector,
    inject,
    list_bases,
    list_selectors,
    load_adapters,
    preview_positions,
    save_adapters,
)
from spectral_peft.selectors.band import BandSelector
from tests.adapter_cases import CALIBRATION, TinyNet, make_config, tiny_input

FREQUENCY_BASES = [b for b in list_bases() if get_basis(b).has_frequency]


def test_registry_lists_the_new_selectors():
    assert {"gradient", "learned", "oracle", "band"} <= set(list_selectors())


# ------------------------------------------------------------------------------ calibration API
def test_data_selectors_without_calibration_are_a_clear_error():
    for name in list_selectors():
        config = make_config("dct", name)
        if not config.build_selector().needs_data:
            continue
        with pytest.raises(ValueError, match=rf"selector '{name}' chooses positions from data: pass calibration"):
            inject(TinyNet(), config)


@pytest.mark.parametrize("selector", list_selectors())
def test_preview_equals_what_inject_chooses_and_leaves_the_model_untouched(selector):
    config = make_config("dct", selector)
    model = TinyNet()
    model.train()
    model.head.weight.requires_grad_(False)
    model.up.weight.grad = torch.ones_like(model.up.weight)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    preview = preview_positions(model, config, calibration=CALIBRATION)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and all(m.training for m in model.modules())
    assert model.up.weight.requires_grad and not model.head.weight.requires_grad
    assert torch.equal(model.up.weight.grad, torch.ones_like(model.up.weight))
    injected = inject(model, config, calibration=CALIBRATION)
    assert {k: v.tolist() for k, v in preview.items()} == {k: a.positions.tolist() for k, a in adapters(injected).items()}


def test_positions_from_preview_can_be_injected():
    config = make_config("dht", "gradient")
    positions = preview_positions(TinyNet(), config, calibration=CALIBRATION)
    model = inject(TinyNet(), config, positions=positions)  # no calibration needed any more
    assert torch.equal(model.up.positions, positions["up"])


def test_plain_iterables_use_model_loss_of_mapping_batches():
    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = TinyNet()

        def forward(self, x, labels):
            return {"loss": nn.functional.cross_entropy(self.body(x).mean(1), labels)}

    batches = [{"x": tiny_input(seed=i), "labels": torch.tensor([0, 1, 2, 3, 4])} for i in range(2)]
    config = SpectralConfig(basis="dct", selector="gradient", n=5, target_modules=["up"])
    from_list = preview_positions(WithLoss(), config, calibration=batches)
    from_generator = preview_positions(WithLoss(), config, calibration=(b for b in batches))
    assert torch.equal(from_list["body.up"], from_generator["body.up"])


def test_non_mapping_batches_without_a_loss_function_are_a_clear_error():
    config = make_config("dct", "gradient")
    with pytest.raises(TypeError, match=r"mapping batches .*Calibration\(batches, loss_fn="):
        preview_positions(TinyNet(), config, calibration=[tiny_input()])
    with pytest.raises(TypeError, match="calibration must be a Calibration or an iterable of batches"):
        preview_positions(TinyNet(), config, calibration=tiny_input())
    with pytest.raises(ValueError, match="at least one batch"):
        Calibration([], lambda m, b: m(b).sum())


# ------------------------------------------------------------------------------ gradient
def test_gradient_is_top_n_of_the_transformed_hand_computed_gradient():
    # y = x W0ᵀ, L = Σ (y ⊙ T) over one batch: ∂L/∂W0 = Tᵀ x, computed here by hand
    gen = torch.Generator().manual_seed(0)
    layer = nn.Linear(16, 8, bias=False)
    x = torch.randn(5, 16, generator=gen)
    T = torch.randn(5, 8, generator=gen)
    model = nn.Sequential(layer)
    calibration = Calibration([x], lambda m, batch: (m(batch) * T).sum())
    basis = get_basis("dct")
    G = T.T @ x
    expected = np.sort(np.argsort(-basis.forward(G).abs().numpy().ravel(), kind="stable")[:12])
    config = SpectralConfig(basis="dct", selector="gradient", n=12, target_modules=["0"])
    chosen = preview_positions(model, config, calibration=calibration)["0"]
    np.testing.assert_array_equal(chosen.numpy(), expected)


def test_gradient_accumulates_magnitudes_over_batches():
    model = TinyNet()
    layer = model.up
    basis = get_basis("dht")
    expected = torch.zeros(32, 16)
    for x in CALIBRATION.batches[:2]:
        layer.weight.grad = None
        with torch.enable_grad():
            w = layer.weight.detach().requires_grad_(True)
            y = nn.functional.linear(nn.functional.gelu(nn.functional.linear(x, w, layer.bias)), model.down.weight, model.down.bias)
            (model.head(y).pow(2).mean()).backward()
        expected += basis.forward(w.grad).abs()
    top = np.sort(np.argsort(-expected.numpy().ravel(), kind="stable")[:20])
    config = make_config("dht", "gradient", selector_options={"batches": 2})
    assert preview_positions(TinyNet(), config, calibration=CALIBRATION)["up"].tolist() == top.tolist()


# ------------------------------------------------------------------------------ oracle
def test_oracle_is_top_n_of_the_stored_update_spectrum(tmp_path):
    gen = torch.Generator().manual_seed(5)
    basis = get_basis("wht")
    planted = {"up": torch.randperm(32 * 16, generator=gen)[:20], "down": torch.randperm(16 * 32, generator=gen)[:20]}
    updates = {}
    for name, shape in (("up", (32, 16)), ("down", (16, 32))):
        spectrum = torch.randn(shape, generator=gen) * 0.01
        spectrum.view(-1)[planted[name]] = 5 + torch.rand(20, generator=gen)
        updates[name] = basis.inverse(spectrum).float().contiguous()
    save_file(updates, str(tmp_path / "updates.safetensors"))
    config = SpectralConfig(basis="wht", selector="oracle", n=20, target_modules=["up", "down"],
                            selector_options={"updates": str(tmp_path / "updates.safetensors")})
    chosen = preview_positions(TinyNet(), config)
    for name in ("up", "down"):
        assert chosen[name].tolist() == sorted(planted[name].tolist())


def test_oracle_errors_name_the_problem(tmp_path):
    path = tmp_path / "updates.safetensors"
    save_file({"up": torch.zeros(32, 16), "down": torch.zeros(8, 8)}, str(path))
    config = make_config("dct", "oracle", selector_options={"updates": str(path)})
    with pytest.raises(ValueError, match=r"stored update of 'down' is \(8, 8\) but the layer is 16x32"):
        preview_positions(TinyNet(), config)
    missing = make_config("dct", "oracle", selector_options={"updates": str(path)}, target_modules=["up", "head"])
    with pytest.raises(ValueError, match=r"has no update for layer 'head'; it holds 2 layers: down, up"):
        preview_positions(TinyNet(), missing)
    with pytest.raises(FileNotFoundError, match="no updates file"):
        preview_positions(TinyNet(), make_config("dct", "oracle", selector_options={"updates": str(tmp_path / "x")}))
    with pytest.raises(ValueError, match=r"selector_options=\{'updates'"):
        preview_positions(TinyNet(), make_config("dct", "oracle", selector_options={}))


# ------------------------------------------------------------------------------ band
@pytest.mark.parametrize("basis", FREQUENCY_BASES)
@pytest.mark.parametrize("band", ["low", "mid", "high"])
def test_band_positions_lie_in_the_requested_band(basis, band):
    config = make_config(basis, "band", n=40, selector_options={"band": band})
    chosen = preview_positions(TinyNet(), config)["up"].numpy()
    freq = get_basis(basis).frequency(32, 16).numpy().ravel()
    order = np.argsort(freq, kind="stable")  # rank by frequency, ties by index
    third = len(freq) // 3
    k = {"low": 0, "mid": 1, "high": 2}[band]
    members = set(order[len(freq) * k // 3 : len(freq) * (k + 1) // 3].tolist())
    assert set(chosen.tolist()) <= members
    assert len(set(chosen.tolist())) == 40
    # and the bands are ordered by frequency
    if band == "low":
        assert freq[chosen].max() <= np.sort(freq)[third]
    if band == "high":
        assert freq[chosen].min() >= np.sort(freq)[2 * third]


def test_band_draw_is_uniform_inside_the_band():
    freq = torch.arange(30, dtype=torch.float64).reshape(5, 6)
    counts = np.zeros(30)
    for seed in range(600):
        chosen = get_selector("band", band="mid").select(freq, (5, 6), 3, torch.Generator().manual_seed(seed))
        counts[chosen.numpy()] += 1
    assert counts[:10].sum() == counts[20:].sum() == 0
    expected = 600 * 3 / 10
    assert ((counts[10:20] - expected) ** 2 / expected).sum() < 30  # chi-square, 9 d.o.f.


@pytest.mark.parametrize("band, expected", [("low", range(0, 12)), ("mid", range(9, 21)), ("high", range(18, 30))])
def test_a_band_smaller_than_n_widens_around_its_centre(band, expected):
    freq = torch.arange(30, dtype=torch.float64).reshape(5, 6)
    chosen = get_selector("band", band=band).select(freq, (5, 6), 12, torch.Generator().manual_seed(0))
    assert chosen.tolist() == list(expected)


def test_weighted_band_prefers_the_band_but_may_leave_it():
    freq = torch.arange(300, dtype=torch.float64).reshape(15, 20)
    chosen = get_selector("band", band="high", spread=0.15).select(freq, (15, 20), 150, torch.Generator().manual_seed(0))
    ranks = chosen.numpy() / 300
    assert ranks.mean() > 0.6 and ranks.min() < 2 / 3
    assert len(set(chosen.tolist())) == 150


def test_band_errors():
    with pytest.raises(ValueError, match="band must be one of low, mid, high"):
        get_selector("band", band="top")
    without = [b for b in list_bases() if not get_basis(b).has_frequency]
    assert without
    with pytest.raises(ValueError, match=rf"basis '{without[0]}' states none"):
        preview_positions(TinyNet(), make_config(without[0], "band"))
    assert BandSelector.needs_frequency


# ------------------------------------------------------------------------------ learned
def planted_task(basis_name: str, planted_count: int = 12, seed: int = 0):
    """A linear layer whose target update lives on known positions of a known basis."""
    gen = torch.Generator().manual_seed(seed)
    rows, cols = 32, 16
    basis = get_basis(basis_name)
    planted = torch.randperm(rows * cols, generator=gen)[:planted_count]
    spectrum = torch.zeros(rows * cols)
    spectrum[planted] = torch.randn(planted_count, generator=gen).sign() * (0.5 + torch.rand(planted_count, generator=gen))
    target = basis.inverse(spectrum.view(rows, cols))
    model = nn.Sequential(nn.Linear(cols, rows))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(rows, cols, generator=gen) * 0.3)
    weight, bias = model[0].weight.detach().clone(), model[0].bias.detach().clone()
    batches = []
    for _ in range(8):
        x = torch.randn(64, cols, generator=gen)
        batches.append((x, x @ (weight + target).T + bias))
    calibration = Calibration(batches, lambda m, b: (m(b[0]) - b[1]).pow(2).mean())
    return model, set(planted.tolist()), calibration


@pytest.mark.parametrize("basis", ["dct", "wht"])
def test_learned_recovers_planted_positions_where_random_does_not(basis):
    model, planted, calibration = planted_task(basis)
    hits = {}
    for selector in ("learned", "random"):
        config = SpectralConfig(basis=basis, selector=selector, n=len(planted), seed=1, target_modules=["0"])
        hits[selector] = len(set(preview_positions(model, config, calibration=calibration)["0"].tolist()) & planted)
    assert hits["learned"] >= 0.75 * len(planted), hits
    assert hits["random"] <= 0.25 * len(planted), hits


def test_learned_is_deterministic_under_a_seed_and_saved_like_any_positions(tmp_path):
    config = make_config("dct", "learned")
    first = inject(TinyNet(), config, calibration=CALIBRATION)
    again = inject(TinyNet(), config, calibration=CALIBRATION)
    other_seed = inject(TinyNet(), config.replace(seed=9), calibration=CALIBRATION)
    assert torch.equal(first.up.positions, again.up.positions)
    assert not torch.equal(first.up.positions, other_seed.up.positions)
    save_adapters(first, tmp_path)
    restored = load_adapters(TinyNet(), tmp_path)  # no calibration: the stored positions are used
    assert torch.equal(restored.up.positions, first.up.positions)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"temperature": 1.0}, r"temperature must be a pair"),
        ({"noise": -0.5}, "noise must be a non-negative number"),
    ],
)
def test_learned_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        get_selector("learned", **options)
