"""The optional frequency map of every basis that states one, against the spectral centroid of
its basis functions (an independent oracle: numpy.fft of B⁻¹(e_q), scipy.stats.spearmanr)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from spectral_peft import SpectralBasis, get_basis, list_bases
from tests.conftest import supports

CONFIGS = [(name, {}) for name in list_bases()] + [
    ("wht", {"order": "natural"}),
    ("wavelet", {"wavelet": "haar"}),
    ("dft", {"fourierft_compat": True}),
    ("patchwise", {"inner": "wht", "block": 4, "levels": 2}),
]
WITH_FREQUENCY = [c for c in CONFIGS if get_basis(c[0], **c[1]).has_frequency]
WITHOUT_FREQUENCY = [c for c in CONFIGS if not get_basis(c[0], **c[1]).has_frequency]
IDS = lambda configs: [n + "".join(f"[{k}={v}]" for k, v in o.items()) for n, o in configs]  # noqa: E731


def spectral_centroid(basis: SpectralBasis, rows: int, cols: int) -> np.ndarray:
    """For each position q, the power-weighted mean radial DFT frequency of the basis function B⁻¹(e_q)."""
    unit = torch.eye(rows * cols, dtype=torch.float64).reshape(rows * cols, rows, cols)
    power = np.abs(np.fft.fft2(basis.inverse(unit).numpy())) ** 2
    fu = 2 * np.minimum(np.arange(rows), rows - np.arange(rows)) / rows
    fv = 2 * np.minimum(np.arange(cols), cols - np.arange(cols)) / cols
    radial = np.sqrt((fu[:, None] ** 2 + fv[None, :] ** 2) / 2)
    return (power * radial).sum(axis=(1, 2)) / power.sum(axis=(1, 2))


@pytest.mark.parametrize("name, options", WITH_FREQUENCY, ids=IDS(WITH_FREQUENCY))
@pytest.mark.parametrize("shape", [(16, 16), (8, 32)])
def test_frequency_ranks_positions_like_the_spectral_centroid(name, options, shape):
    basis = get_basis(name, **options)
    assert supports(basis, shape)
    freq = basis.frequency(*shape)
    assert freq.shape == shape and freq.dtype == torch.float64
    assert 0 <= freq.min() and freq.max() <= 1
    rho = scipy.stats.spearmanr(freq.numpy().ravel(), spectral_centroid(basis, *shape)).statistic
    assert rho > 0.9, f"{name}{options}: frequency map agrees poorly with the spectral centroid (rho={rho:.3f})"


@pytest.mark.parametrize("name, options", WITHOUT_FREQUENCY, ids=IDS(WITHOUT_FREQUENCY))
def test_a_basis_without_a_frequency_map_says_so(name, options):
    basis = get_basis(name, **options)
    with pytest.raises(NotImplementedError, match="states no frequency per position"):
        basis.frequency(8, 8)


def test_there_are_bases_on_both_sides():
    assert WITH_FREQUENCY and WITHOUT_FREQUENCY
