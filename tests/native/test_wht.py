"""The compiled Walsh–Hadamard transform (spectral_peft.native.wht) against scipy, and its operator.

Oracle: ``scipy.linalg.hadamard(n)`` (Sylvester order) as a dense float64 matrix. Hypothesis
draws lengths 1..2^12 (odd and even numbers of butterfly stages), token counts across the
kernel's 8-token blocks and its groups of blocks for the transposed write, scales and row strides.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import operators
from spectral_peft.factorization import Entries, Factorization
from spectral_peft.native import library, wht
from tests.conftest import seeds
from tests.native.conftest import LEFT_TO_TORCH, left_to_torch_input, torch_threads

pytestmark = pytest.mark.skipif(library._compiler() is None, reason="needs a C compiler: these tests check the compiled kernel")


def _expected(x: torch.Tensor, scale: float) -> np.ndarray:
    return x.double().numpy() @ scipy.linalg.hadamard(x.shape[-1]) * scale  # H is symmetric


@given(bits=st.integers(0, 12), tokens=st.integers(0, 140), pad=st.integers(0, 3), scale=st.floats(0.01, 4.0), seed=seeds)
def test_equals_scipy_hadamard_token_major_and_transposed(bits, tokens, pad, scale, seed):
    n = 1 << bits
    tokens = tokens if n <= 256 else min(tokens, 17)  # keep the dense oracle small
    x = torch.randn(tokens, n + pad, generator=torch.Generator().manual_seed(seed))[:, pad:]  # a row stride wider than the row
    expected = _expected(x, scale)
    got = wht.hadamard(x, scale)
    assert got is not None and got.shape == (tokens, n)
    tol = 1e-5 * max(scale, 1.0) * max(n, 1) ** 0.5
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=tol)
    flipped = wht.hadamard(x, scale, transposed=True)
    assert flipped is not None and flipped.shape == (n, tokens) and flipped.is_contiguous()
    np.testing.assert_allclose(flipped.numpy(), expected.T, rtol=1e-5, atol=tol)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("transposed", [False, True])
def test_token_blocks_shared_among_threads_give_the_one_thread_result(threads, transposed):
    x = torch.randn(1001, 128, generator=torch.Generator().manual_seed(0))  # 126 blocks of 8, 16 groups of 64
    results = {}
    for count in (1, threads):
        with torch_threads(count):
            results[count] = wht.hadamard(x, 128**-0.5, transposed=transposed)
    assert torch.equal(results[1], results[threads])
    expected = _expected(x, 128**-0.5)
    np.testing.assert_allclose(results[threads].numpy(), expected.T if transposed else expected, rtol=1e-5, atol=1e-5)


def test_leading_dimensions_are_batched():
    x = torch.randn(2, 3, 32)
    torch.testing.assert_close(wht.hadamard(x, 0.5), wht.hadamard(x.reshape(6, 32), 0.5).reshape(2, 3, 32))


@pytest.mark.parametrize("case", [*LEFT_TO_TORCH, "not a power of two", "3-D transposed"])
def test_left_to_torch(case, monkeypatch):
    x, transposed = torch.randn(4, 8), False
    if case == "not a power of two":
        x = torch.randn(4, 12)
    elif case == "3-D transposed":
        x, transposed = torch.randn(2, 4, 8), True
    else:
        x = left_to_torch_input(case, x, monkeypatch)
    assert wht.hadamard(x, 1.0, transposed=transposed) is None


@given(bits=st.integers(0, 10), tokens=st.integers(1, 40), seed=seeds)
def test_the_operator_in_float32_equals_its_float64_kronecker_route(bits, tokens, seed):
    op = operators.walsh_hadamard(1 << bits)
    x = torch.randn(tokens, op.n, generator=torch.Generator().manual_seed(seed))
    expected = op.apply(x.double())  # float64: the torch route (checked against scipy in tests/bases/test_operators.py)
    torch.testing.assert_close(op.apply(x).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op.apply_transposed(x).double(), expected.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op.T.adjoint_transposed(x).double(), expected.T, rtol=1e-5, atol=1e-5)
    assert op.apply_transposed(x).is_contiguous()
    assert op.apply_transposed(x.double()) is None  # no kernel for float64: the caller transposes


@given(rows_bits=st.integers(0, 6), cols_bits=st.integers(0, 6), count=st.integers(0, 30), seed=seeds)
def test_a_factorization_built_from_it_equals_its_matrices(rows_bits, cols_bits, count, seed):
    """dense_from_values (which takes the transposed write) against left·K·right written out."""
    rows, cols = 1 << rows_bits, 1 << cols_bits
    gen = torch.Generator().manual_seed(seed)
    q, p = torch.randint(rows, (count,), generator=gen), torch.randint(cols, (count,), generator=gen)
    entries = Entries(q, p, torch.arange(count), torch.ones(count, dtype=torch.float64))
    f = Factorization(operators.walsh_hadamard(rows).T, operators.walsh_hadamard(cols), entries)
    values = torch.randn(count, generator=gen)
    core = torch.zeros(rows, cols, dtype=torch.float64).index_put_((q, p), values.double(), accumulate=True)
    h_rows = torch.tensor(scipy.linalg.hadamard(rows) / rows**0.5)
    h_cols = torch.tensor(scipy.linalg.hadamard(cols) / cols**0.5)
    torch.testing.assert_close(f.dense_from_values(values).double(), h_rows @ core @ h_cols, rtol=1e-5, atol=1e-5)
