"""The compiled transpose (spectral_peft.native.transpose) against ``x.T``, and its fallbacks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import operators
from spectral_peft.factorization import separable
from spectral_peft.native import library, transpose
from tests.conftest import seeds
from tests.native.conftest import LEFT_TO_TORCH, left_to_torch_input, torch_threads

pytestmark = pytest.mark.skipif(library._compiler() is None, reason="needs a C compiler: these tests check the compiled kernel")


@given(rows=st.integers(0, 90), cols=st.integers(0, 90), pad=st.integers(0, 3), threads=st.sampled_from([1, 2, 3]), seed=seeds)
def test_equals_the_transpose(rows, cols, pad, threads, seed):
    x = torch.randn(rows, cols + pad, generator=torch.Generator().manual_seed(seed))[:, pad:]  # a row stride wider than the row
    with torch_threads(threads):
        got = transpose.transposed(x)
    assert got is not None and got.is_contiguous() and torch.equal(got, x.T)


@pytest.mark.parametrize("threads", [2, 3])
def test_tiles_shared_among_threads(threads):
    x = torch.randn(1030, 517, generator=torch.Generator().manual_seed(0))  # enough to go parallel, ragged tiles
    with torch_threads(threads):
        assert torch.equal(transpose.transposed(x), x.T)


@pytest.mark.parametrize("case", [*LEFT_TO_TORCH, "not 2-D"])
def test_left_to_torch(case, monkeypatch):
    x = torch.randn(4, 6)
    x = x[None] if case == "not 2-D" else left_to_torch_input(case, x, monkeypatch)
    assert transpose.transposed(x) is None


@given(rows=st.integers(1, 40), cols=st.integers(1, 40), count=st.integers(1, 30), seed=seeds)
def test_a_factorization_built_through_it_equals_its_float64_build(rows, cols, count, seed):
    gen = torch.Generator().manual_seed(seed)
    positions = torch.randperm(rows * cols, generator=gen)[: min(count, rows * cols)]
    fact = separable(operators.cosine(rows), operators.cosine(cols), positions)
    values = torch.randn(positions.numel(), generator=gen, dtype=torch.float64)
    expected = fact.dense_from_values(values)  # float64: torch's transpose
    torch.testing.assert_close(fact.dense_from_values(values.float()).double(), expected, rtol=1e-5, atol=1e-5)
