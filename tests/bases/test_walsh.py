"""The ``wht`` basis against scipy.linalg.hadamard, in natural and sequency order."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import get_basis
from tests.conftest import seeds

POW2 = st.sampled_from([1, 2, 4, 8, 16, 32])


def sign_changes(matrix: np.ndarray) -> np.ndarray:
    return (np.diff(np.sign(matrix), axis=1) != 0).sum(axis=1)


def hadamard(size: int, order: str) -> np.ndarray:
    """The orthonormal Hadamard matrix from scipy; sequency order sorts its rows by sign changes."""
    h = scipy.linalg.hadamard(size) / np.sqrt(size)
    return h if order == "natural" else h[np.argsort(sign_changes(h), kind="stable")]


@pytest.mark.parametrize("order", ["natural", "sequency"])
@given(rows=POW2, cols=POW2, seed=seeds)
def test_wht_matches_scipy_hadamard(order, rows, cols, seed):
    W = np.random.default_rng(seed).standard_normal((rows, cols))
    basis = get_basis("wht", order=order)
    expected = hadamard(rows, order) @ W @ hadamard(cols, order).T
    np.testing.assert_allclose(basis.forward(torch.from_numpy(W)).numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(basis.inverse(torch.from_numpy(expected)).numpy(), W, rtol=1e-10, atol=1e-10)


def test_sequency_order_has_k_sign_changes_in_row_k():
    h = hadamard(64, "sequency")
    assert sign_changes(h).tolist() == list(range(64))


def test_natural_order_is_self_inverse_and_sequency_is_a_row_permutation_of_it():
    W = torch.randn(8, 16, dtype=torch.float64)
    natural = get_basis("wht", order="natural")
    torch.testing.assert_close(natural.forward(natural.forward(W)), W)
    a = natural.forward(W).flatten().sort().values
    b = get_basis("wht", order="sequency").forward(W).flatten().sort().values
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("order", ["natural", "sequency"])
def test_frequency_is_the_sequency_over_the_length(order):
    rows, cols = 8, 16
    freq = get_basis("wht", order=order).frequency(rows, cols).numpy()
    phi_rows = sign_changes(hadamard(rows, order)) / rows
    phi_cols = sign_changes(hadamard(cols, order)) / cols
    expected = np.sqrt((phi_rows[:, None] ** 2 + phi_cols[None, :] ** 2) / 2)
    np.testing.assert_allclose(freq, expected, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 4), (4, 6), (24, 32), (384, 384)])
def test_non_power_of_two_dimensions_are_a_clear_error(shape):
    with pytest.raises(ValueError, match=r"wht basis needs both dimensions to be powers of two .*patchwise"):
        get_basis("wht").forward(torch.zeros(shape))


def test_unknown_order_is_an_error():
    with pytest.raises(ValueError, match=r"order must be one of \('natural', 'sequency'\)"):
        get_basis("wht", order="walsh")


@pytest.mark.parametrize("size, factor", [(128, 64), (256, 64), (8192, 64), (64, 4), (32, 2)])
def test_kronecker_factored_operator_matches_scipy_hadamard(size, factor, monkeypatch):
    """The 1-D operator splits H_n into Kronecker factors (two or three here); the product must be H_n."""
    from spectral_peft.operators import WalshHadamardOp

    monkeypatch.setattr(WalshHadamardOp, "FACTOR", factor)
    op = WalshHadamardOp(size)
    assert len(op.factors) >= 2 and all(f <= factor for f in op.factors)
    x = np.random.default_rng(size).standard_normal((3, 2, size))
    expected = x @ (scipy.linalg.hadamard(size) / np.sqrt(size)).T
    np.testing.assert_allclose(op.apply(torch.from_numpy(x)).numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(op.adjoint(torch.from_numpy(expected)).numpy(), x, rtol=1e-10, atol=1e-10)
