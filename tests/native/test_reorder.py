"""Makhoul's even/odd reordering (spectral_peft.native.reorder) against its definition, and the DCT operator that uses it.

Oracle: the permutation written out as index lists (v = [x_0, x_2, …, x_3, x_1]); the DCT operator
in float32 (kernel) against its float64 route (a gather), which tests/bases/test_operators.py
checks against scipy.fft.dct.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import operators
from spectral_peft.native import library, reorder
from tests.conftest import seeds
from tests.native.conftest import LEFT_TO_TORCH, left_to_torch_input, torch_threads

pytestmark = pytest.mark.skipif(library._compiler() is None, reason="needs a C compiler: these tests check the compiled kernel")


def _makhoul_order(n: int) -> list[int]:
    return list(range(0, n, 2)) + list(range(1, n, 2))[::-1]


@given(n=st.integers(1, 70), rows=st.integers(0, 5), pad=st.integers(0, 3), seed=seeds)
def test_forward_and_inverse_are_the_permutation_written_out(n, rows, pad, seed):
    x = torch.randn(rows, n + pad, generator=torch.Generator().manual_seed(seed))[:, pad:]  # a row stride wider than the row
    order = _makhoul_order(n)
    v = reorder.even_odd(x)
    assert v is not None and torch.equal(v, x[:, order])
    back = torch.empty_like(x)
    back[:, order] = x
    assert torch.equal(reorder.even_odd_inverse(x), back)


@pytest.mark.parametrize("threads", [2, 3])
def test_rows_shared_among_threads_give_the_permutation(threads):
    x = torch.randn(601, 1030, generator=torch.Generator().manual_seed(0))  # enough rows to split
    order = _makhoul_order(1030)
    with torch_threads(threads):
        v, back = reorder.even_odd(x), reorder.even_odd_inverse(x[:, order])
    assert torch.equal(v, x[:, order]) and torch.equal(back, x)


def test_leading_dimensions_are_batched():
    x = torch.randn(2, 3, 20)
    assert torch.equal(reorder.even_odd(x), x[..., _makhoul_order(20)])


@pytest.mark.parametrize("case", LEFT_TO_TORCH)
def test_left_to_torch(case, monkeypatch):
    x = left_to_torch_input(case, torch.randn(4, 8), monkeypatch)
    assert reorder.even_odd(x) is None and reorder.even_odd_inverse(x) is None


@given(n=st.integers(1, 70), tokens=st.integers(1, 9), seed=seeds)
def test_the_cosine_operator_in_float32_equals_its_float64_route(n, tokens, seed):
    op = operators.cosine(n)
    gen = torch.Generator().manual_seed(seed)
    x, z = torch.randn(tokens, n, generator=gen), torch.randn(tokens, op.size_out, generator=gen)
    torch.testing.assert_close(op.apply(x).double(), op.apply(x.double()), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op.adjoint(z).double(), op.adjoint(z.double()), rtol=1e-5, atol=1e-5)
