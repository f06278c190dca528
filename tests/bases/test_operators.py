"""The 1-D operators of ``spectral_peft.operators`` against independent oracles, and their algebra.

Oracles: scipy.fft (DCT-II), the DHT written out as a sum, numpy.fft.rfft, pywt.dwt (periodization),
scipy.linalg.hadamard. Properties (hypothesis): the adjoint is the transpose (⟨Ax, z⟩ = ⟨x, Aᵀz⟩),
``synthesize`` inverts ``coefficients``, and ``slot`` says where every coefficient sits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import scipy.fft
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import operators
from tests.conftest import randn, seeds

lengths = st.integers(1, 33)
even_lengths = st.integers(1, 20).map(lambda k: 2 * k)
powers_of_two = st.integers(0, 7).map(lambda k: 2**k)


def _dht_by_sum(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    k = np.arange(n)
    angle = 2 * np.pi * np.outer(k, k) / n
    return x @ ((np.cos(angle) + np.sin(angle)) / math.sqrt(n)).T


def _coefficient_ops(data):
    """A drawn coefficient operator and its oracle (x: (..., n) numpy -> natural-order coefficients)."""
    kind = data.draw(st.sampled_from(["identity", "hartley", "cosine", "walsh_hadamard", "dwt_level"]), label="op")
    if kind == "identity":
        n = data.draw(lengths, label="n")
        return operators.identity(n), lambda x: x
    if kind == "hartley":
        n = data.draw(lengths, label="n")
        return operators.hartley(n), _dht_by_sum
    if kind == "cosine":
        n = data.draw(lengths, label="n")
        return operators.cosine(n), lambda x: scipy.fft.dct(x, type=2, norm="ortho", axis=-1)
    if kind == "walsh_hadamard":
        n = data.draw(powers_of_two, label="n")
        return operators.walsh_hadamard(n), lambda x: x @ (scipy.linalg.hadamard(n) / math.sqrt(n)).T
    wavelet = data.draw(st.sampled_from(["haar", "db2", "db4", "sym3", "coif1"]), label="wavelet")
    n = data.draw(even_lengths, label="n")

    def dwt(x):
        a, d = pywt.dwt(x, wavelet, mode="periodization", axis=-1)
        return np.concatenate([a, d], axis=-1)

    return operators.dwt_level(wavelet, n), dwt


@given(data=st.data(), seed=seeds)
def test_coefficients_match_the_oracle_and_synthesize_inverts_them(data, seed):
    op, oracle = _coefficient_ops(data)
    x = randn(3, op.n, seed=seed)
    coefficients = op.coefficients(x)
    np.testing.assert_allclose(coefficients.numpy(), oracle(x.numpy()), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(op.synthesize(coefficients), x, rtol=1e-10, atol=1e-10)
    # along another dimension, batched
    xt = randn(op.n, 4, seed=seed + 1)
    torch.testing.assert_close(op.coefficients(xt, dim=0), op.coefficients(xt.T).T, rtol=1e-12, atol=1e-12)


@given(wavelet=st.sampled_from(["haar", "db2", "db4", "coif1"]), half=st.integers(1, 12), columns=st.integers(1, 70), seed=seeds)
def test_a_column_synthesis_in_slices_equals_pywt(wavelet, half, columns, seed):
    """Along dim -2 without a graph, DwtLevel.synthesize gathers windows one output block at a time here."""
    op = operators.dwt_level(wavelet, 2 * half)
    c = randn(2 * half, columns, seed=seed)
    expected = pywt.idwt(c[:half].numpy(), c[half:].numpy(), wavelet, mode="periodization", axis=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(operators, "WINDOW_CHUNK_ELEMENTS", 1)  # one block per step
        np.testing.assert_allclose(op.synthesize(c, dim=-2).numpy(), expected, rtol=1e-10, atol=1e-10)
        batched = op.synthesize(torch.stack([c, 2 * c]), dim=-2)  # leading dimensions: the same per item
        np.testing.assert_allclose(batched.numpy(), np.stack([expected, 2 * expected]), rtol=1e-10, atol=1e-10)
    graph = op.synthesize(c.clone().requires_grad_(), dim=-2)  # with a graph to record: one piece
    np.testing.assert_allclose(graph.detach().numpy(), expected, rtol=1e-10, atol=1e-10)


@given(data=st.data(), seed=seeds)
def test_slot_locates_every_coefficient(data, seed):
    op, _ = _coefficient_ops(data)
    x = randn(2, op.n, seed=seed)
    slots, signs = op.slot(torch.arange(op.n))
    torch.testing.assert_close(op.apply(x)[:, slots] * signs, op.coefficients(x), rtol=1e-12, atol=1e-12)


def _all_ops(data):
    kind = data.draw(st.sampled_from(["coefficient", "rfft", "cascade"]), label="family")
    if kind == "coefficient":
        return _coefficient_ops(data)[0]
    if kind == "rfft":
        return operators.rfft(data.draw(lengths, label="n"), data.draw(st.sampled_from(["backward", "ortho", "forward"])))
    levels = data.draw(st.integers(1, 3), label="levels")
    n = data.draw(st.integers(1, 4), label="multiple") * 2**levels
    return operators.wavelet_cascade(data.draw(st.sampled_from(["haar", "db3"])), n, levels)


@given(data=st.data(), seed=seeds)
def test_adjoint_is_the_transpose(data, seed):
    op = _all_ops(data)
    if data.draw(st.booleans(), label="transposed"):
        op = op.T
    x, z = randn(5, op.size_in, seed=seed), randn(5, op.size_out, seed=seed + 1)
    lhs = (op.apply(x) * z).sum(-1)
    rhs = (x * op.adjoint(z)).sum(-1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@given(data=st.data(), seed=seeds)
def test_block_diagonal_applies_its_block_to_every_piece(data, seed):
    """blockdiag(A, …, A) against A on each piece separately, for blocks on both sides of DENSE_MAX
    (small ones run as one batched matmul with A's dense matrix, larger ones call A)."""
    block = _all_ops(data)
    if data.draw(st.booleans(), label="transposed"):
        block = block.T
    count = data.draw(st.integers(1, 4), label="count")
    op = operators.BlockDiagonalOp(block, count)
    x, z = randn(3, op.size_in, seed=seed), randn(3, op.size_out, seed=seed + 1)
    pieces_in, pieces_out = x.split(block.size_in, dim=-1), z.split(block.size_out, dim=-1)
    torch.testing.assert_close(op.apply(x), torch.cat([block.apply(p) for p in pieces_in], -1), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(op.adjoint(z), torch.cat([block.adjoint(p) for p in pieces_out], -1), rtol=1e-10, atol=1e-10)
    assert op.dense == (max(block.size_in, block.size_out) <= op.DENSE_MAX)


@given(n=lengths, seed=seeds, norm=st.sampled_from(["backward", "ortho", "forward"]))
def test_rfft_rows_are_cos_and_sin(n, seed, norm):
    op = operators.rfft(n, norm)
    x = randn(2, n, seed=seed)
    expected = np.fft.rfft(x.numpy(), norm=norm)
    out = op.apply(x).numpy()
    np.testing.assert_allclose(out[:, 0::2], expected.real, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out[:, 1::2], expected.imag, rtol=1e-10, atol=1e-10)
    freq = torch.arange(n)
    t = np.arange(n)
    scale = {"backward": 1.0, "ortho": n**-0.5, "forward": 1.0 / n}[norm]
    cos_slot, cos_sign = op.cos_slot(freq)
    sin_slot, sin_sign = op.sin_slot(freq)
    for f in range(n):
        np.testing.assert_allclose(out[:, cos_slot[f]] * cos_sign[f].item(), scale * x.numpy() @ np.cos(2 * np.pi * f * t / n), atol=1e-10)
        np.testing.assert_allclose(out[:, sin_slot[f]] * sin_sign[f].item(), scale * x.numpy() @ np.sin(2 * np.pi * f * t / n), atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_transformed_in_float32(dtype):
    x = randn(4, 16, seed=0)
    for op in (operators.hartley(16), operators.cosine(16), operators.walsh_hadamard(16), operators.rfft(16, "ortho")):
        out = op.apply(x.to(dtype))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), op.apply(x.to(dtype).double()), rtol=1e-6, atol=1e-6)


def test_bad_lengths_are_rejected():
    with pytest.raises(ValueError, match="power-of-two"):
        operators.walsh_hadamard(12)
    with pytest.raises(ValueError, match="even length"):
        operators.dwt_level("db2", 7)
