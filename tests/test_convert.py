"""to_peft / from_peft (FourierFT, WaveFT) and to_lora, checked against Hugging Face peft itself."""

from __future__ import annotations

import copy

import numpy as np
import peft
import pytest
import torch
from torch import nn

from spectral_peft import SpectralConfig, adapters, get_config, inject
from spectral_peft.convert import from_peft, peft_positions, to_lora, to_peft

M, N = 12, 20  # non-square, even (WaveFT halves both), and the quadrants are not square either


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a, self.b, self.head = nn.Linear(N, M), nn.Linear(N, M), nn.Linear(M, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    def forward(self, x):
        return self.head(self.a(x) + self.b(x))


def _x():
    return torch.randn(6, N, generator=torch.Generator().manual_seed(5))


FORMATS = {
    "fourierft": (dict(basis="dft", basis_options={"fourierft_compat": True}),
                  lambda **kw: peft.FourierFTConfig(**kw), "fourierft_spectrum"),
    "waveft": (dict(basis="wavelet", basis_options={"wavelet": "haar", "level": 1}),
               lambda **kw: peft.WaveFTConfig(wavelet_family="db1", **kw), "waveft_spectrum"),
}


def _ours(fmt: str, **changes):
    kwargs = dict(FORMATS[fmt][0], selector="random", share_positions=True, n=30, alpha=7.0, seed=2024,
                  target_modules=["a", "b"], modules_to_save=["head"])
    kwargs.update(changes)
    config = SpectralConfig(**kwargs)
    # FourierFT's draw is what the random selector picks; WaveFT's lands in its own block order
    model = inject(Net(), config, positions=peft_positions(Net(), config) if fmt == "waveft" else None)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for adapter in adapters(model).values():
            adapter.coefficients.copy_(torch.randn(adapter.n, generator=gen))
        model.head.weight.mul_(2.0)  # a "trained" head that must travel with the adapter
    return model


def _theirs(fmt: str):
    model = peft.get_peft_model(Net(), FORMATS[fmt][1](n_frequency=30, scaling=7.0, random_loc_seed=99,
                                                        target_modules=["a", "b"], modules_to_save=["head"]))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if FORMATS[fmt][2] in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            if "modules_to_save" in name and name.endswith("head.weight"):
                p.mul_(2.0)
    return model


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_to_peft_gives_a_peft_model_with_the_same_outputs_that_also_survives_peft_save_and_load(fmt, tmp_path):
    ours = _ours(fmt)
    x = _x()
    expected = ours(x)
    theirs = to_peft(ours)
    assert isinstance(theirs, peft.PeftModel) and not adapters(theirs)
    torch.testing.assert_close(theirs(x), expected, atol=1e-5, rtol=1e-5)
    # peft re-derives positions from random_loc_seed: its own save/load round trip must hold too
    theirs.save_pretrained(tmp_path)
    reloaded = peft.PeftModel.from_pretrained(Net(), tmp_path)
    torch.testing.assert_close(reloaded(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_from_peft_gives_spectral_adapters_with_the_same_outputs_and_converts_back(fmt):
    theirs = _theirs(fmt)
    x = _x()
    expected = theirs(x)
    spectra = {n: p.detach().clone() for n, p in theirs.named_parameters() if FORMATS[fmt][2] in n}
    ours = from_peft(theirs)
    assert sorted(adapters(ours)) == ["a", "b"] and not any(isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer)
                                                            for m in ours.modules())
    assert get_config(ours).modules_to_save == ("head",)
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)
    back = to_peft(ours)
    torch.testing.assert_close(back(x), expected, atol=1e-5, rtol=1e-5)
    for name, value in spectra.items():
        assert torch.equal(back.get_parameter(name), value)


def test_waveft_blocks_are_reordered_not_just_copied():
    # the same flat positions in both layouts would give a different ΔW: the top-right/bottom-left swap matters
    theirs = _theirs("waveft")
    layer = theirs.base_model.model.a
    rows, cols = layer.waveft_indices["default"]
    off_diagonal = ((rows < M // 2) & (cols >= N // 2)) | ((rows >= M // 2) & (cols < N // 2))
    assert off_diagonal.any()
    delta = layer.get_delta_weight("default")
    ours = from_peft(theirs)
    torch.testing.assert_close(ours.a.delta_weight(), delta, atol=1e-5, rtol=1e-5)
    naive = ours.a.coefficients.new_zeros(M, N)
    naive[rows, cols] = layer.waveft_spectrum["default"].detach()
    assert not torch.allclose(7.0 * ours.a.basis.inverse(naive), delta, atol=1e-3)


def test_to_peft_refuses_what_peft_cannot_represent():
    with pytest.raises(ValueError, match=r"layer 'a': its positions are not the 30 that FOURIERFT draws from "
                                         r"random_loc_seed=2024.*use to_lora"):
        to_peft(_ours("fourierft", selector="mixed", delta=0.5))
    with pytest.raises(ValueError, match=r"basis .*dct.* has no peft counterpart"):
        to_peft(_ours("fourierft", basis="dct", basis_options={}))
    with pytest.raises(ValueError, match=r"layer 'a' uses 2 wavelet levels; WaveFT has one"):
        to_peft(_ours("waveft", basis_options={"wavelet": "haar", "level": 2}))


def _numpy_truncation(delta: torch.Tensor, rank: int):
    u, s, vh = np.linalg.svd(delta.detach().double().numpy(), full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vh[:rank], float((s[:rank] ** 2).sum() / (s**2).sum())


@pytest.mark.parametrize("rank", [3, M])
def test_to_lora_is_the_truncated_svd_of_delta_and_reports_its_energy(rank, tmp_path):
    ours = inject(Net(), SpectralConfig(basis="dht", selector="mixed", delta=0.5, n=40, alpha=3.0,
                                        target_modules=["a", "b"], modules_to_save=["head"]))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for adapter in adapters(ours).values():
            adapter.coefficients.copy_(torch.randn(adapter.n, generator=gen))
    reference = copy.deepcopy(ours)
    oracle = {name: _numpy_truncation(a.delta_weight(), rank) for name, a in adapters(reference).items()}
    export = to_lora(ours, rank)
    lora = export.model
    for name, (truncated, energy) in oracle.items():
        layer = lora.base_model.model.get_submodule(name)
        np.testing.assert_allclose(layer.get_delta_weight("default").detach().double().numpy(), truncated, atol=1e-5)
        assert export.captured_energy[name] == pytest.approx(energy, abs=1e-9)
    assert ("captured energy min" in export.summary()) and (rank < M) == (min(export.captured_energy.values()) < 0.999)
    # outputs: the base model with ΔW replaced by its truncation (exact at full rank)
    x = _x()
    with torch.no_grad():
        for name, (truncated, _) in oracle.items():
            adapter = reference.get_submodule(name)
            adapter.base_layer.weight += torch.from_numpy(truncated).float()
            adapter.coefficients.zero_()
    torch.testing.assert_close(lora(x), reference(x), atol=1e-5, rtol=1e-5)
    lora.save_pretrained(tmp_path)  # a peft LoRA adapter like any other
    torch.testing.assert_close(peft.PeftModel.from_pretrained(Net(), tmp_path)(x), lora(x), atol=1e-6, rtol=1e-6)


def test_to_lora_agrees_with_peft_convert_to_lora_on_a_fourierft_adapter():
    from peft.tuners.lora.conversion import convert_to_lora

    ours = _ours("fourierft")
    theirs = to_peft(copy.deepcopy(ours))
    _, state = convert_to_lora(theirs, rank=4)
    export = to_lora(ours, 4)
    for name in ("a", "b"):
        a = next(v for k, v in state.items() if k.endswith(f"{name}.lora_A.weight"))
        b = next(v for k, v in state.items() if k.endswith(f"{name}.lora_B.weight"))
        layer = export.model.base_model.model.get_submodule(name)
        torch.testing.assert_close(layer.get_delta_weight("default"), b @ a, atol=1e-5, rtol=1e-4)


def test_to_lora_rank_must_fit_every_layer():
    with pytest.raises(ValueError, match=r"rank 13 exceeds layer 'a' \(12x20\)"):
        to_lora(_ours("fourierft"), 13)
