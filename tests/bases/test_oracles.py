"""Each registered basis against an independent oracle: the definition written out as a sum,
numpy.fft, scipy.fft or pywt. Expected values never come from spectral_peft itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import get_basis
from tests.bases import oracles as O
from tests.conftest import general_shapes, pow2_multiple_shapes, seeds

RTOL, ATOL = 1e-10, 1e-10


def rand_np(M, N, seed, *lead):
    return np.random.default_rng(seed).standard_normal((*lead, M, N))


def fwd(basis, W: np.ndarray) -> np.ndarray:
    return basis.forward(torch.from_numpy(W)).numpy()


def inv(basis, C: np.ndarray) -> np.ndarray:
    return basis.inverse(torch.from_numpy(C)).numpy()


def assert_np_close(actual, expected, rtol=RTOL, atol=ATOL, msg=""):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=msg)


# ============================================================================================
# The oracles agree with each other (guards against a bug in the test code itself)
# ============================================================================================
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1), (3, 4), (5, 5), (6, 4)])
def test_oracle_self_consistency(shape):
    M, N = shape
    W = rand_np(M, N, 0)
    H = O.dht2_loops(W)
    assert_np_close(O.dht2_sum(W), H)
    assert_np_close(O.dht2_via_fft(W), H)
    assert_np_close(O.dht2_sum(O.dht2_sum(W)), W)
    assert_np_close(O.dht2_separable(O.dht2_separable(W)), W)
    C = O.dft_real_layout(W)
    assert_np_close(np.linalg.norm(C), np.linalg.norm(W))
    assert_np_close(O.dft_real_layout_inverse(C), W)
    assert_np_close(O.fourierft_sum(W), np.fft.ifft2(W).real)
    assert_np_close(O.idct2(O.dct2(W)), W)


# ============================================================================================
# Hartley
# ============================================================================================
@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 1), (2, 3), (3, 4), (4, 4), (5, 3)])
def test_dht_matches_definition_written_as_loops(shape):
    M, N = shape
    W = rand_np(M, N, 1)
    b = get_basis("dht")
    assert_np_close(fwd(b, W), O.dht2_loops(W))
    # self-inverse: the inverse is the same sum
    assert_np_close(inv(b, W), O.dht2_loops(W))


@given(shape=general_shapes(max_side=16), seed=seeds)
def test_dht_matches_definition(shape, seed):
    M, N = shape
    W = rand_np(M, N, seed)
    b = get_basis("dht")
    H = O.dht2_sum(W)
    assert_np_close(fwd(b, W), H)
    assert_np_close(inv(b, W), H)
    assert_np_close(fwd(b, H), W)


@given(shape=general_shapes(max_side=16), seed=seeds)
def test_dht_separable_matches_definition(shape, seed):
    M, N = shape
    W = rand_np(M, N, seed)
    b = get_basis("dht_separable")
    H = O.dht2_separable(W)
    assert_np_close(fwd(b, W), H)
    assert_np_close(inv(b, W), H)
    assert_np_close(fwd(b, H), W)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1), (3, 4), (4, 4)])
def test_dht_separable_matches_loops(shape):
    M, N = shape
    W = rand_np(M, N, 2)
    expected = np.zeros((M, N))
    for u in range(M):
        for v in range(N):
            expected[u, v] = sum(
                O.cas(2 * math.pi * u * m / M) * W[m, n] * O.cas(2 * math.pi * n * v / N)
                for m in range(M)
                for n in range(N)
            ) / math.sqrt(M * N)
    assert_np_close(fwd(get_basis("dht_separable"), W), expected)


@pytest.mark.parametrize("shape", [(4, 5), (8, 8), (3, 7)])
def test_dht_and_dht_separable_are_different_transforms(shape):
    W = rand_np(*shape, 3)
    a = fwd(get_basis("dht"), W)
    b = fwd(get_basis("dht_separable"), W)
    assert np.abs(a - b).max() > 1e-3, "dht and dht_separable returned the same coefficients"


def test_dht_batched_matches_definition():
    W = rand_np(3, 5, 4, 2, 3)
    out = fwd(get_basis("dht"), W)
    for i in range(2):
        for j in range(3):
            assert_np_close(out[i, j], O.dht2_sum(W[i, j]))


# ============================================================================================
# Fourier: real orthonormal layout
# ============================================================================================
@pytest.mark.parametrize(
    "shape", [(1, 1), (1, 2), (2, 1), (1, 7), (6, 1), (2, 2), (3, 3), (4, 4), (3, 4), (4, 5), (5, 6), (6, 8)]
)
def test_dft_layout_fixed_shapes(shape):
    M, N = shape
    W = rand_np(M, N, 5)
    b = get_basis("dft")
    C = O.dft_real_layout(W)
    assert_np_close(fwd(b, W), C, msg=f"dft layout differs at {M}x{N}")
    assert_np_close(inv(b, C), W)


@given(shape=general_shapes(max_side=16), seed=seeds)
def test_dft_layout_matches_numpy(shape, seed):
    M, N = shape
    W = rand_np(M, N, seed)
    b = get_basis("dft")
    assert_np_close(fwd(b, W), O.dft_real_layout(W))
    # inverse of an arbitrary coefficient array, rebuilt as a Hermitian spectrum
    C = rand_np(M, N, seed + 1)
    assert_np_close(inv(b, C), O.dft_real_layout_inverse(C))


def test_dft_single_coefficient_positions():
    """A unit coefficient at each position gives the documented real cosine/sine pattern."""
    M, N = 4, 6
    b = get_basis("dft")
    m = np.arange(M)[:, None]
    n = np.arange(N)[None, :]
    for u in range(M):
        for v in range(N):
            C = np.zeros((M, N))
            C[u, v] = 1.0
            W = inv(b, C)
            theta = 2 * np.pi * (u * m / M + v * n / N)
            kind = O.dft_position_kind(u, v, M, N)
            if kind == "self":
                expected = np.cos(theta) / np.sqrt(M * N)
            elif kind == "canonical":
                expected = np.sqrt(2) * np.cos(theta) / np.sqrt(M * N)
            else:  # partner of canonical p = conj(u, v): carries sqrt2 * Im F[p]
                pu, pv = (-u) % M, (-v) % N
                theta_p = 2 * np.pi * (pu * m / M + pv * n / N)
                expected = -np.sqrt(2) * np.sin(theta_p) / np.sqrt(M * N)
            assert_np_close(W, expected, msg=f"position {(u, v)} ({kind})")


def test_dft_batched_matches_numpy():
    W = rand_np(5, 4, 6, 3)
    out = fwd(get_basis("dft"), W)
    for i in range(3):
        assert_np_close(out[i], O.dft_real_layout(W[i]))


# ============================================================================================
# Fourier: FourierFT compatibility mode
# ============================================================================================
def test_fourierft_compat_flags():
    b = get_basis("dft", fourierft_compat=True)
    assert b.invertible is False
    assert b.orthonormal is False
    assert get_basis("dft", fourierft_compat=False).orthonormal is True


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1), (3, 4), (4, 4), (5, 6)])
def test_fourierft_compat_fixed_shapes(shape):
    M, N = shape
    S = rand_np(M, N, 7)
    b = get_basis("dft", fourierft_compat=True)
    # written out as loops over (u, v) for every (m, n)
    expected = np.zeros((M, N))
    for mm in range(M):
        for nn in range(N):
            expected[mm, nn] = sum(
                S[u, v] * math.cos(2 * math.pi * (u * mm / M + v * nn / N))
                for u in range(M)
                for v in range(N)
            ) / (M * N)
    assert_np_close(inv(b, S), expected)
    assert_np_close(inv(b, S), np.fft.ifft2(S).real)


@given(shape=general_shapes(max_side=16), seed=seeds)
def test_fourierft_compat_matches_ifft2(shape, seed):
    M, N = shape
    S = rand_np(M, N, seed)
    b = get_basis("dft", fourierft_compat=True)
    expected = np.fft.ifft2(S).real  # numpy default norm="backward": 1/(MN) on the inverse
    assert_np_close(inv(b, S), expected)
    assert_np_close(inv(b, S), O.fourierft_sum(S))
    # torch's own default-norm ifft2, the exact FourierFT reference expression
    ref_torch = torch.fft.ifft2(torch.from_numpy(S)).real.numpy()
    assert_np_close(inv(b, S), ref_torch)
    # forward is the adjoint of inverse; the kernel is symmetric, so it is the same formula
    W = rand_np(M, N, seed + 1)
    assert_np_close(fwd(b, W), O.fourierft_sum(W))
    assert_np_close(np.sum(fwd(b, W) * S), np.sum(W * inv(b, S)))


def test_fourierft_compat_gradcheck():
    b = get_basis("dft", fourierft_compat=True)
    for M, N in [(1, 3), (3, 4), (4, 4)]:
        S = torch.from_numpy(rand_np(M, N, 8)).requires_grad_(True)
        assert torch.autograd.gradcheck(b.inverse, (S,), eps=1e-6, atol=1e-6)
        assert torch.autograd.gradcheck(b.forward, (S,), eps=1e-6, atol=1e-6)


def test_fourierft_compat_batched_and_dtypes():
    b = get_basis("dft", fourierft_compat=True)
    S = rand_np(4, 6, 9, 2)
    out = inv(b, S)
    for i in range(2):
        assert_np_close(out[i], np.fft.ifft2(S[i]).real)
    S32 = torch.from_numpy(S).float()
    out32 = b.inverse(S32)
    assert out32.dtype == torch.float32 and out32.shape == S32.shape
    np.testing.assert_allclose(out32.numpy(), out, rtol=1e-5, atol=1e-6)


# ============================================================================================
# Cosine
# ============================================================================================
@given(shape=general_shapes(max_side=16), seed=seeds)
def test_dct_matches_scipy(shape, seed):
    M, N = shape
    W = rand_np(M, N, seed)
    b = get_basis("dct")
    assert_np_close(fwd(b, W), O.dct2(W))
    assert_np_close(inv(b, W), O.idct2(W))


def test_dct_batched_matches_scipy():
    W = rand_np(6, 5, 10, 2, 2)
    b = get_basis("dct")
    assert_np_close(fwd(b, W), O.dct2(W))
    assert_np_close(inv(b, W), O.idct2(W))


def test_dct_float32_matches_scipy():
    W = rand_np(7, 12, 11).astype(np.float32)
    out = get_basis("dct").forward(torch.from_numpy(W))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), O.dct2(W.astype(np.float64)), rtol=1e-5, atol=1e-5)


# ============================================================================================
# Wavelets
# ============================================================================================
FAMILIES = ["haar", "db2", "db4", "sym4", "coif1"]
WAVELET_SHAPES = [(16, 32), (32, 8), (64, 48), (8, 8), (2, 2), (4, 6), (12, 20)]


def _levels_to_try(M, N, wavelet):
    """Every explicit level the shape allows: 1 .. the deepest level with M, N divisible by 2**level.

    Levels past pywt.dwt_max_level are valid requests too (the filter wraps around the periodized
    signal; pywt only warns), so they are included.
    """
    return list(range(1, O.divisibility_level(M, N) + 1))


@pytest.mark.parametrize("wavelet", FAMILIES)
@pytest.mark.parametrize("shape", WAVELET_SHAPES)
def test_wavelet_matches_pywt_explicit_levels(wavelet, shape):
    M, N = shape
    W = rand_np(M, N, 12)
    for level in _levels_to_try(M, N, wavelet):
        b = get_basis("wavelet", wavelet=wavelet, level=level)
        expected = O.wavedec2_array(W, wavelet, level)
        assert_np_close(fwd(b, W), expected, msg=f"{wavelet} level={level} {M}x{N}")
        C = rand_np(M, N, 13)
        assert_np_close(inv(b, C), O.waverec2_array(C, wavelet, level), msg=f"inverse {wavelet} level={level}")
        assert_np_close(inv(b, expected), W)


@pytest.mark.parametrize("wavelet", FAMILIES)
@pytest.mark.parametrize("shape", WAVELET_SHAPES)
def test_wavelet_default_level_matches_pywt(wavelet, shape):
    M, N = shape
    W = rand_np(M, N, 14)
    level = O.default_wavelet_level(M, N, wavelet)
    b = get_basis("wavelet", wavelet=wavelet)
    assert_np_close(fwd(b, W), O.wavedec2_array(W, wavelet, level), msg=f"default level should be {level}")


def test_wavelet_default_family_is_db4():
    M, N = 16, 32
    W = rand_np(M, N, 15)
    b = get_basis("wavelet")
    level = O.default_wavelet_level(M, N, "db4")
    assert_np_close(fwd(b, W), O.wavedec2_array(W, "db4", level))


def test_wavelet_default_level_examples():
    """Hand-computed default levels, independent of the formula in oracles.py."""
    # 64x48 db4: divisible to 4, dwt_max_level(48, 8) = 2 -> 2.   haar: cap 5 -> 4.
    # 6x8: divisible to 1.   4x4 db4: cap 0 -> at least 1.
    cases = [((64, 48), "db4", 2), ((64, 48), "haar", 4), ((6, 8), "haar", 1), ((4, 4), "db4", 1),
             ((32, 32), "haar", 5), ((32, 32), "db2", 3)]
    for (M, N), wavelet, level in cases:
        assert O.default_wavelet_level(M, N, wavelet) == level
        W = rand_np(M, N, 16)
        out = fwd(get_basis("wavelet", wavelet=wavelet), W)
        assert_np_close(out, O.wavedec2_array(W, wavelet, level), msg=f"{M}x{N} {wavelet}")


@given(
    k=st.integers(1, 4),
    a=st.integers(1, 3),
    c=st.integers(1, 3),
    wavelet=st.sampled_from(FAMILIES + ["db1", "db3", "sym2", "sym5", "coif2"]),
    use_default=st.booleans(),
    data=st.data(),
    seed=seeds,
)
def test_wavelet_matches_pywt_property(k, a, c, wavelet, use_default, data, seed):
    M, N = a * 2**k, c * 2**k
    W = rand_np(M, N, seed)
    if use_default:
        level = O.default_wavelet_level(M, N, wavelet)
        b = get_basis("wavelet", wavelet=wavelet)
    else:
        level = data.draw(st.sampled_from(_levels_to_try(M, N, wavelet)), label="level")
        b = get_basis("wavelet", wavelet=wavelet, level=level)
    assert_np_close(fwd(b, W), O.wavedec2_array(W, wavelet, level))
    assert_np_close(inv(b, W), O.waverec2_array(W, wavelet, level))


@pytest.mark.parametrize("wavelet, shape, level", [("db4", (8, 8), 3), ("coif1", (4, 8), 2), ("sym4", (16, 32), 4), ("db2", (2, 2), 1)])
def test_wavelet_explicit_level_beyond_dwt_max_level(wavelet, shape, level):
    M, N = shape
    assert level > pywt.dwt_max_level(min(M, N), pywt.Wavelet(wavelet).dec_len)
    b = get_basis("wavelet", wavelet=wavelet, level=level)
    W = rand_np(M, N, 20)
    C = fwd(b, W)
    assert_np_close(C, O.wavedec2_array(W, wavelet, level))
    assert_np_close(np.linalg.norm(C), np.linalg.norm(W))
    assert_np_close(inv(b, C), W)


def test_wavelet_batched_matches_pywt():
    W = rand_np(16, 8, 17, 2, 2)
    b = get_basis("wavelet", wavelet="db2", level=2)
    out = fwd(b, W)
    for i in range(2):
        for j in range(2):
            assert_np_close(out[i, j], O.wavedec2_array(W[i, j], "db2", 2))


@pytest.mark.parametrize("wavelet", FAMILIES)
def test_wavelet_orthonormal_with_options(wavelet):
    b = get_basis("wavelet", wavelet=wavelet, level=2)
    assert b.orthonormal and b.invertible
    W = rand_np(16, 24, 18)
    assert_np_close(np.linalg.norm(fwd(b, W)), np.linalg.norm(W))


def test_wavelet_gradcheck_with_options():
    for wavelet, level, shape in [("haar", 2, (4, 8)), ("db2", 1, (4, 6)), ("sym4", 2, (8, 4))]:
        b = get_basis("wavelet", wavelet=wavelet, level=level)
        W = torch.from_numpy(rand_np(*shape, 19)).requires_grad_(True)
        assert torch.autograd.gradcheck(b.forward, (W,), eps=1e-6, atol=1e-6)
        assert torch.autograd.gradcheck(b.inverse, (W,), eps=1e-6, atol=1e-6)


# ============================================================================================
# Identity
# ============================================================================================
@given(shape=general_shapes(), seed=seeds)
def test_identity(shape, seed):
    W = rand_np(*shape, seed)
    b = get_basis("identity")
    np.testing.assert_array_equal(fwd(b, W), W)
    np.testing.assert_array_equal(inv(b, W), W)
