"""The FourierFT and SSH configurations reproduce their published ΔW formulas, written out here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spectral_peft import SpectralConfig, adapters, inject

M, N = 12, 20  # non-square on purpose: the SSH reference code only handles square matrices


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a, self.b = nn.Linear(N, M), nn.Linear(N, M)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, x):
        return self.a(x) + self.b(x)


FOURIERFT = dict(basis="dft", basis_options={"fourierft_compat": True}, selector="random",
                 share_positions=True, n=40, alpha=150.0, seed=2024, target_modules=["a", "b"])


def _set_coefficients(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in adapters(model).values():
            adapter.coefficients.copy_(torch.randn(adapter.n, generator=gen))


def test_fourierft_delta_is_scaling_times_real_ifft2_of_the_sparse_spectrum():
    model = inject(TwoLayers(), SpectralConfig(**FOURIERFT))
    _set_coefficients(model)
    # FourierFT draws one randperm per shape with the fixed seed: same positions in every layer
    expected_positions = sorted(torch.randperm(M * N, generator=torch.Generator().manual_seed(2024))[:40].tolist())
    assert model.a.positions.tolist() == model.b.positions.tolist() == expected_positions
    S = np.zeros((M, N))
    S.flat[expected_positions] = model.a.coefficients.detach().double().numpy()
    # ΔW(m, n) = scaling · (1/MN) Σ_u Σ_v S(u, v) cos(2π(um/M + vn/N))
    m, n, u, v = np.ix_(np.arange(M), np.arange(N), np.arange(M), np.arange(N))
    written_out = 150.0 / (M * N) * (S[None, None] * np.cos(2 * np.pi * (u * m / M + v * n / N))).sum(axis=(2, 3))
    np.testing.assert_allclose(model.a.delta_weight().detach().numpy(), written_out, atol=1e-5)
    np.testing.assert_allclose(written_out, 150.0 * np.fft.ifft2(S).real, atol=1e-10)


def test_fourierft_configuration_matches_hugging_face_peft_outputs():
    import peft  # a dev dependency: the independent reference implementation

    ours = inject(TwoLayers(), SpectralConfig(**FOURIERFT))
    _set_coefficients(ours)
    theirs = peft.get_peft_model(
        TwoLayers(), peft.FourierFTConfig(n_frequency=40, scaling=150.0, random_loc_seed=2024, target_modules=["a", "b"])
    )
    with torch.no_grad():
        for name in ("a", "b"):
            layer = theirs.base_model.model.get_submodule(name)
            rows, cols = layer.indices["default"]
            flat = (rows * N + cols).tolist()
            ours_by_position = dict(zip(getattr(ours, name).positions.tolist(), getattr(ours, name).coefficients.tolist()))
            layer.fourierft_spectrum["default"].copy_(torch.tensor([ours_by_position[q] for q in flat]))
    x = torch.randn(7, N, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=1e-5)


def _cas_matrix(k: int) -> np.ndarray:
    idx = np.arange(k)
    angle = 2 * np.pi * np.outer(idx, idx) / k
    return (np.cos(angle) + np.sin(angle)) / np.sqrt(k)


@pytest.mark.parametrize("delta", [0.0, 0.7, 1.0])
def test_ssh_configuration_selects_and_builds_delta_by_the_written_out_formula(delta):
    config = SpectralConfig(basis="dht_separable", selector="mixed", delta=delta, n=30, alpha=5.0, seed=1,
                            target_modules=["a"])
    base = TwoLayers()
    w0 = base.a.weight.detach().double().numpy()
    model = inject(base, config)
    _set_coefficients(model)
    cm, cn = _cas_matrix(M), _cas_matrix(N)
    energy = (cm @ w0 @ cn) ** 2
    k = int(np.floor(delta * 30))
    top = set(np.argsort(-energy.reshape(-1), kind="stable")[:k].tolist())
    chosen = set(model.a.positions.tolist())
    assert top <= chosen and len(chosen) == 30
    S = np.zeros((M, N))
    S.flat[model.a.positions.numpy()] = model.a.coefficients.detach().double().numpy()
    np.testing.assert_allclose(model.a.delta_weight().detach().numpy(), 5.0 * cm @ S @ cn, atol=1e-5)
