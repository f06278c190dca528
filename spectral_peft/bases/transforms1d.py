"""Fast orthonormal 1-D transforms along one dimension, built on ``torch.fft``.

These are the building blocks of the separable 2-D bases (and of the adapter's fast path,
which transforms activations along the feature dimension). Every function is real-in /
real-out, differentiable, batched over all other dimensions and runs on the input's device.

* DHT:  h[k] = N^-1/2 Σ_n x[n] cas(2πkn/N),  cas = cos + sin  (self-inverse)
* DCT-II (orthonormal): X[k] = s_k Σ_n x[n] cos(πk(2n+1)/(2N)),  s_0 = √(1/N), s_k = √(2/N).
  Computed with Makhoul's reordering v = [x[0], x[2], …, x[3], x[1]] and one real FFT V = rfft(v):
  with Z[k] = s_k·e^{iπk/(2N)}·conj V[k] (k ≤ N/2), X[k] = Re Z[k] and X[N−k] = Im Z[k].
  Its inverse (the DCT-III) runs the same steps backwards with one ``irfft``.

The DCT routines are written as gather → FFT → complex scale → gather, because on a CPU these
transforms are memory-bound and every extra elementwise pass over the data costs as much as the
FFT itself.
"""

from __future__ import annotations

import functools
import math

import torch


def _to_last(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x if dim in (-1, x.dim() - 1) else x.transpose(dim, -1)


def dht_1d(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Orthonormal discrete Hartley transform along ``dim``: Re F − Im F with F = fft(x, "ortho")."""
    spectrum = torch.fft.fft(x, dim=dim, norm="ortho")
    return spectrum.real - spectrum.imag


@functools.lru_cache(maxsize=64)
def _dct_plan(n: int, device: torch.device, dtype: torch.dtype):
    """Index maps and twiddles of the length-``n`` DCT (cached per size, device and precision)."""
    half = n // 2 + 1
    # Makhoul reordering: v[j] = x[2j] (j < ceil(n/2)), v[n-1-j] = x[2j+1]
    reorder = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)])
    # Output gather from the interleaved (Re Z[0], Im Z[0], Re Z[1], …): X[k] = Re Z[k], X[n-k] = Im Z[k]
    k = torch.arange(n)
    from_spectrum = torch.where(k < half, 2 * k, 2 * (n - k) + 1)
    # Inverse input gather: pairs (X[k], X[n-k]) for k ≤ n/2; X[n] is never used (DC imag is ignored)
    kk = torch.arange(half)
    to_spectrum = torch.stack([kk, torch.where(kk == 0, kk, n - kk)], dim=-1).reshape(-1)
    # Inverse output interleave: x[2j] = v[j], x[2j+1] = v[n-1-j]
    j = torch.arange(n)
    unorder = torch.where(j % 2 == 0, j // 2, n - 1 - j // 2)

    kf = torch.arange(half, dtype=torch.float64)
    scale = torch.full_like(kf, math.sqrt(2.0 / n))
    scale[0] = math.sqrt(1.0 / n)
    theta = math.pi * kf / (2 * n)
    twiddle = torch.polar(scale, theta)  # s_k e^{iπk/(2N)}, applied to conj V
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    to = dict(device=device)
    return (
        reorder.to(**to),
        from_spectrum.to(**to),
        to_spectrum.to(**to),
        unorder.to(**to),
        twiddle.to(device=device, dtype=complex_dtype),
        (1.0 / twiddle).to(device=device, dtype=complex_dtype),
    )


def dct_1d(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Orthonormal DCT-II along ``dim`` (equals ``scipy.fft.dct(x, type=2, norm="ortho")``)."""
    x = _to_last(x, dim)
    n = x.shape[-1]
    reorder, from_spectrum, _, _, twiddle, _ = _dct_plan(n, x.device, x.dtype)
    z = torch.fft.rfft(x.index_select(-1, reorder), dim=-1).conj() * twiddle
    out = torch.view_as_real(z).flatten(-2).index_select(-1, from_spectrum)
    return _to_last(out, dim)


def idct_1d(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse of :func:`dct_1d` (the orthonormal DCT-III) along ``dim``.

    Inverts Z[k] = X[k] + i·X[N−k]:  conj V[k] = Z[k] / (s_k e^{iπk/(2N)}), and the reordered
    signal is irfft(V).
    """
    x = _to_last(x, dim)
    n = x.shape[-1]
    _, _, to_spectrum, unorder, _, inverse_twiddle = _dct_plan(n, x.device, x.dtype)
    pairs = x.index_select(-1, to_spectrum).unflatten(-1, (-1, 2))
    spectrum = (torch.view_as_complex(pairs.contiguous()) * inverse_twiddle).conj()
    reordered = torch.fft.irfft(spectrum, n=n, dim=-1)
    return _to_last(reordered.index_select(-1, unorder), dim)
