"""Independent reference implementations (numpy / scipy / pywt / sums written out).

Nothing here imports spectral_peft: these are the oracles the package is measured against.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pywt
import scipy.fft


# ---------------------------------------------------------------- Hartley
def cas(x):
    return np.cos(x) + np.sin(x)


def dht2_loops(W: np.ndarray) -> np.ndarray:
    """H(u,v) = (MN)^-1/2 sum_m sum_n W(m,n) cas(2 pi (um/M + vn/N)), with python loops."""
    M, N = W.shape
    H = np.zeros((M, N))
    for u in range(M):
        for v in range(N):
            s = 0.0
            for m in range(M):
                for n in range(N):
                    s += W[m, n] * cas(2 * math.pi * (u * m / M + v * n / N))
            H[u, v] = s / math.sqrt(M * N)
    return H


def dht2_sum(W: np.ndarray) -> np.ndarray:
    """The same definition, as one broadcast sum over a (u, v, m, n) kernel."""
    M, N = W.shape
    u = np.arange(M)[:, None, None, None]
    v = np.arange(N)[None, :, None, None]
    m = np.arange(M)[None, None, :, None]
    n = np.arange(N)[None, None, None, :]
    K = cas(2 * np.pi * (u * m / M + v * n / N))
    return np.einsum("uvmn,mn->uv", K, W) / np.sqrt(M * N)


def dht2_via_fft(W: np.ndarray) -> np.ndarray:
    F = np.fft.fft2(W)
    return (F.real - F.imag) / np.sqrt(W.shape[0] * W.shape[1])


def cas_matrix(K: int) -> np.ndarray:
    k = np.arange(K)
    return cas(2 * np.pi * np.outer(k, k) / K) / np.sqrt(K)


def dht2_separable(W: np.ndarray) -> np.ndarray:
    M, N = W.shape
    return cas_matrix(M) @ W @ cas_matrix(N)


# ---------------------------------------------------------------- Fourier
def _conj(u, v, M, N):
    return (-u) % M, (-v) % N


def dft_position_kind(u, v, M, N):
    """'self', 'canonical' or 'partner' for position (u, v) of an M x N spectrum."""
    u_self = u == 0 or (M % 2 == 0 and u == M // 2)
    v_self = v == 0 or (N % 2 == 0 and v == N // 2)
    if u_self and v_self:
        return "self"
    if 0 < v and 2 * v < N:
        return "canonical"
    if v_self and 0 < u and 2 * u < M:
        return "canonical"
    return "partner"


def dft_real_layout(W: np.ndarray) -> np.ndarray:
    """Real orthonormal layout of fft2(W, norm='ortho'), built position by position."""
    M, N = W.shape
    F = np.fft.fft2(W, norm="ortho")
    C = np.full((M, N), np.nan)
    for u in range(M):
        for v in range(N):
            kind = dft_position_kind(u, v, M, N)
            if kind == "self":
                C[u, v] = F[u, v].real
            elif kind == "canonical":
                cu, cv = _conj(u, v, M, N)
                assert dft_position_kind(cu, cv, M, N) == "partner"
                C[u, v] = math.sqrt(2) * F[u, v].real
                C[cu, cv] = math.sqrt(2) * F[u, v].imag
    assert not np.isnan(C).any(), "layout left a position unassigned"
    return C


def dft_real_layout_inverse(C: np.ndarray) -> np.ndarray:
    """Rebuild the Hermitian spectrum from the real layout and apply ifft2(norm='ortho')."""
    M, N = C.shape
    F = np.zeros((M, N), dtype=complex)
    for u in range(M):
        for v in range(N):
            kind = dft_position_kind(u, v, M, N)
            if kind == "self":
                F[u, v] = C[u, v]
            elif kind == "canonical":
                cu, cv = _conj(u, v, M, N)
                z = (C[u, v] + 1j * C[cu, cv]) / math.sqrt(2)
                F[u, v] = z
                F[cu, cv] = np.conj(z)
    W = np.fft.ifft2(F, norm="ortho")
    assert np.abs(W.imag).max(initial=0.0) < 1e-9 * max(1.0, np.abs(W).max())
    return W.real


def fourierft_sum(S: np.ndarray) -> np.ndarray:
    """(1/(MN)) sum_u sum_v S(u,v) cos(2 pi (um/M + vn/N)) for a real S: Re(ifft2(S))."""
    M, N = S.shape
    u = np.arange(M)[:, None, None, None]
    v = np.arange(N)[None, :, None, None]
    m = np.arange(M)[None, None, :, None]
    n = np.arange(N)[None, None, None, :]
    K = np.cos(2 * np.pi * (u * m / M + v * n / N))
    return np.einsum("uvmn,uv->mn", K, S) / (M * N)


# ---------------------------------------------------------------- cosine
def dct2(W):
    return scipy.fft.dctn(W, type=2, norm="ortho", axes=(-2, -1))


def idct2(C):
    return scipy.fft.idctn(C, type=2, norm="ortho", axes=(-2, -1))


# ---------------------------------------------------------------- wavelets
def divisibility_level(M: int, N: int) -> int:
    lvl = 0
    while M % 2 ** (lvl + 1) == 0 and N % 2 ** (lvl + 1) == 0:
        lvl += 1
    return lvl


def default_wavelet_level(M: int, N: int, wavelet: str) -> int:
    """Deepest level with M, N divisible by 2**level, capped at dwt_max_level, at least 1."""
    div = divisibility_level(M, N)
    if div == 0:
        raise ValueError("odd dimension")
    cap = pywt.dwt_max_level(min(M, N), pywt.Wavelet(wavelet).dec_len)
    return max(1, min(div, cap))


def wavedec2_array(W: np.ndarray, wavelet: str, level: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pywt warns when level > dwt_max_level
        coeffs = pywt.wavedec2(W, wavelet, mode="periodization", level=level)
    arr, _ = pywt.coeffs_to_array(coeffs)
    assert arr.shape == W.shape
    return arr


def waverec2_array(C: np.ndarray, wavelet: str, level: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template = pywt.wavedec2(np.zeros(C.shape), wavelet, mode="periodization", level=level)
        _, slices = pywt.coeffs_to_array(template)
        coeffs = pywt.array_to_coeffs(C, slices, output_format="wavedec2")
        W = pywt.waverec2(coeffs, wavelet, mode="periodization")
    assert W.shape == C.shape
    return W
