"""The compiled DWT cascade (spectral_peft.native.dwt) against pywt, and the operators that use it.

Oracle: ``pywt.dwt(..., mode="periodization")`` applied level by level in float64, each level's
[cA | cD] written to the drawn output columns; the synthesis against the transpose of that
analysis written out as a matrix (the columns of pywt's analysis of the unit vectors). Hypothesis
draws token counts across the kernel's 8-token blocks, lengths, levels, filter families (2 to 18
taps, so deep levels wrap the filter around the signal more than once), output layouts and row
strides.
"""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import operators
from spectral_peft.native import dwt, library
from tests.conftest import seeds
from tests.native.conftest import LEFT_TO_TORCH, left_to_torch_input, torch_threads

pytestmark = pytest.mark.skipif(library._compiler() is None, reason="needs a C compiler: these tests check the compiled kernel")

WAVELETS = ["haar", "db2", "db4", "sym5", "coif3"]


def _filters(wavelet):
    return tuple(f.float().contiguous() for f in operators.wavelet_filters(wavelet))


def _analysis_by_pywt(x: np.ndarray, wavelet: str, levels: int, positions: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((x.shape[0], width))
    signal, offset = x, 0
    for _ in range(levels):
        a, d = pywt.dwt(signal, wavelet, mode="periodization", axis=-1)
        out[:, positions[offset : offset + signal.shape[-1]]] = np.concatenate([a, d], axis=-1)
        offset += signal.shape[-1]
        signal = a
    return out


@st.composite
def cascades(draw):
    wavelet = draw(st.sampled_from(WAVELETS), label="wavelet")
    levels = draw(st.integers(1, 4), label="levels")
    n = draw(st.integers(1, 6), label="multiple") * 2**levels
    size = sum(n >> j for j in range(levels))
    width = size + draw(st.integers(0, 3), label="unused columns")
    gen = np.random.default_rng(draw(seeds, label="layout seed"))
    positions = gen.permutation(width)[:size]
    return wavelet, levels, n, width, positions


@given(cascade=cascades(), tokens=st.integers(0, 27), pad=st.integers(0, 3), seed=seeds)
def test_analysis_equals_pywt_level_by_level(cascade, tokens, pad, seed):
    wavelet, levels, n, width, positions = cascade
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, n + pad, generator=gen)[:, pad:]  # a row stride wider than the row
    got = dwt.analysis(x, *_filters(wavelet), torch.tensor(positions, dtype=torch.int32), levels, width)
    assert got is not None and got.shape == (tokens, width)
    expected = _analysis_by_pywt(x.double().numpy(), wavelet, levels, positions, width)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=2e-5)  # unused columns: zero


@given(cascade=cascades(), tokens=st.integers(0, 27), seed=seeds)
def test_synthesis_is_the_transpose_of_the_analysis(cascade, tokens, seed):
    wavelet, levels, n, width, positions = cascade
    matrix = _analysis_by_pywt(np.eye(n), wavelet, levels, positions, width)  # row t: the analysis of e_t
    z = torch.randn(tokens, width, generator=torch.Generator().manual_seed(seed))
    got = dwt.synthesis(z, *_filters(wavelet), torch.tensor(positions, dtype=torch.int32), levels, n)
    assert got is not None and got.shape == (tokens, n)
    np.testing.assert_allclose(got.numpy(), z.double().numpy() @ matrix.T, rtol=1e-5, atol=2e-5)


@given(wavelet=st.sampled_from(WAVELETS), half=st.integers(1, 40), width=st.integers(1, 70), pad=st.integers(0, 3),
       threads=st.sampled_from([1, 2, 3]), seed=seeds)
def test_a_level_along_the_rows_equals_pywt_idwt_along_axis_0(wavelet, half, width, pad, threads, seed):
    z = torch.randn(2 * half, width + pad, generator=torch.Generator().manual_seed(seed))[:, pad:]  # row stride > width
    with torch_threads(threads):
        got = dwt.synthesis_rows(z, *_filters(wavelet))
    assert got is not None and got.shape == z.shape and got.is_contiguous()
    a, d = z[:half].double().numpy(), z[half:].double().numpy()
    expected = pywt.idwt(a, d, wavelet, mode="periodization", axis=0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=2e-5)


def test_a_level_along_the_rows_is_left_to_torch_where_it_does_not_apply():
    lo, hi = _filters("db2")
    assert dwt.synthesis_rows(torch.randn(3, 8), lo, hi) is None  # odd length
    assert dwt.synthesis_rows(torch.randn(2, 4, 8), lo, hi) is None  # not 2-D
    assert dwt.synthesis_rows(torch.randn(4, 8).double(), lo.double(), hi.double()) is None
    assert dwt.synthesis_rows(torch.randn(4, 8, requires_grad=True), lo, hi) is None


@pytest.mark.parametrize("threads", [2, 3])
def test_token_blocks_shared_among_threads_give_the_one_thread_result(threads):
    wavelet, levels, n = "db4", 3, 64
    width = sum(n >> j for j in range(levels)) + 2
    positions = torch.tensor(np.random.default_rng(0).permutation(width)[: width - 2], dtype=torch.int32)
    x = torch.randn(301, n, generator=torch.Generator().manual_seed(1))  # 38 blocks of 8: several per thread
    results = {}
    for count in (1, threads):
        with torch_threads(count):
            z = dwt.analysis(x, *_filters(wavelet), positions, levels, width)
            results[count] = (z, dwt.synthesis(z, *_filters(wavelet), positions, levels, n))
    assert torch.equal(results[1][0], results[threads][0]) and torch.equal(results[1][1], results[threads][1])
    expected = _analysis_by_pywt(x.double().numpy(), wavelet, levels, positions.numpy(), width)
    np.testing.assert_allclose(results[threads][0].numpy(), expected, rtol=1e-5, atol=2e-5)
    adjoint = _analysis_by_pywt(np.eye(n), wavelet, levels, positions.numpy(), width).T  # synthesis = analysisᵀ
    np.testing.assert_allclose(results[threads][1].numpy(), results[threads][0].double().numpy() @ adjoint, rtol=1e-4, atol=1e-4)


def test_leading_dimensions_are_batched():
    lo, hi = _filters("db2")
    op = operators.wavelet_cascade("db2", 16, 2)
    x = torch.randn(2, 3, 16)
    got = dwt.analysis(x, lo, hi, op.kernel_positions, 2, op.size_out)
    torch.testing.assert_close(got, dwt.analysis(x.reshape(6, 16), lo, hi, op.kernel_positions, 2, op.size_out).reshape(2, 3, -1))


@pytest.mark.parametrize("case", LEFT_TO_TORCH)
def test_left_to_torch(case, monkeypatch):
    lo, hi = _filters("haar")
    op = operators.wavelet_cascade("haar", 8, 1)
    x = left_to_torch_input(case, torch.randn(4, 8), monkeypatch)
    assert dwt.analysis(x, lo, hi, op.kernel_positions, 1, 8) is None


# --- the operators route float32 CPU arrays through the kernel: equal to their float64 torch route


@given(wavelet=st.sampled_from(WAVELETS), levels=st.integers(1, 4), multiple=st.integers(1, 5), tokens=st.integers(1, 19), seed=seeds)
def test_the_cascade_operator_in_float32_equals_its_float64_torch_route(wavelet, levels, multiple, tokens, seed):
    op = operators.wavelet_cascade(wavelet, multiple * 2**levels, levels)
    gen = torch.Generator().manual_seed(seed)
    x, z = torch.randn(tokens, op.size_in, generator=gen), torch.randn(tokens, op.size_out, generator=gen)
    assert dwt.analysis(x, *_filters(wavelet), op.kernel_positions, levels, op.size_out) is not None  # the kernel runs
    torch.testing.assert_close(op.apply(x).double(), op.apply(x.double()), rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(torch.cat(op.apply_blocks(x), -1).double(), op.apply(x.double()), rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(op.adjoint(z).double(), op.adjoint(z.double()), rtol=1e-5, atol=2e-5)


@given(wavelet=st.sampled_from(WAVELETS), half=st.integers(1, 12), dim=st.sampled_from([-1, -2]), seed=seeds)
def test_one_level_in_float32_equals_its_float64_torch_route_along_either_dimension(wavelet, half, dim, seed):
    op = operators.dwt_level(wavelet, 2 * half)
    x = torch.randn(2 * half, 2 * half + 3, generator=torch.Generator().manual_seed(seed))
    x = x if dim == -2 else x.T.contiguous()
    torch.testing.assert_close(op.coefficients(x, dim=dim).double(), op.coefficients(x.double(), dim=dim), rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(op.synthesize(x, dim=dim).double(), op.synthesize(x.double(), dim=dim), rtol=1e-5, atol=2e-5)


def test_positions_that_would_reach_outside_are_refused():
    lo, hi = _filters("haar")
    x = torch.randn(3, 8)
    good = torch.arange(12, dtype=torch.int32)  # two levels: 8 + 4 columns
    assert dwt.analysis(x, lo, hi, good, 2, 12) is not None
    with pytest.raises(ValueError, match=r"positions must index 0..11"):
        dwt.analysis(x, lo, hi, good + 1, 2, 12)
    with pytest.raises(ValueError, match="12 columns"):
        dwt.analysis(x, lo, hi, good[:8], 2, 12)
    with pytest.raises(ValueError, match="int32"):
        dwt.analysis(x, lo, hi, good.long(), 2, 12)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*4"):
        dwt.analysis(x, lo, hi, torch.arange(15, dtype=torch.int32), 4, 15)


def test_positions_changed_in_place_after_a_valid_call_are_checked_again():
    lo, hi = _filters("haar")
    x = torch.randn(3, 8)
    positions = torch.arange(8, dtype=torch.int32)
    assert dwt.analysis(x, lo, hi, positions, 1, 8) is not None  # found valid (and remembered)
    positions[0] = 8
    with pytest.raises(ValueError, match=r"positions must index 0..7"):
        dwt.analysis(x, lo, hi, positions, 1, 8)


def test_positions_made_under_inference_mode_are_checked_on_every_call():
    """Inference tensors have no version counter: nothing is remembered, every call checks."""
    lo, hi = _filters("haar")
    x = torch.randn(3, 8)
    with torch.inference_mode():
        positions = torch.arange(8, dtype=torch.int32)
        assert dwt.analysis(x, lo, hi, positions, 1, 8) is not None
        positions[0] = 8  # in place, and untracked
        with pytest.raises(ValueError, match=r"positions must index 0..7"):
            dwt.analysis(x, lo, hi, positions, 1, 8)


def test_an_operator_first_built_under_inference_mode_transforms_as_one_built_outside():
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    expected = operators.DwtLevel("db2", 32).coefficients(x)
    with torch.inference_mode():  # e.g. basis.forward(W) of a wavelet basis during evaluation
        got = operators.DwtLevel("db2", 32).coefficients(x)
    torch.testing.assert_close(got, expected)
