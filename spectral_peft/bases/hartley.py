"""Discrete Hartley bases: the standard 2-D DHT and the separable variant used by SSH.

* ``dht`` (standard):  H(u,v) = (MN)^-1/2 Σ_m Σ_n W(m,n)·cas(2π(um/M + vn/N)),
  computed as Re F − Im F with F = fft2(W, norm="ortho").
* ``dht_separable``:   H = C_M W C_N with C_K[k,n] = cas(2πkn/K)/√K,
  i.e. the 1-D DHT (``operators.hartley``) along the rows and then along the columns.

cas = cos + sin. Both are real, orthonormal and their own inverse, but they are different
transforms (cas(a+b) ≠ cas(a)·cas(b)), so they rank and pick different coefficients.

The standard DHT is computed from one real 2-D FFT (the half spectrum ``rfft2``; Hermitian
symmetry gives the other half).

Fast routes: ``dht_separable`` is separable. The standard DHT is a sum of two separable terms,
cas(a_u + b_v) = cas(a_u)·cos(b_v) + cas(−a_u)·sin(b_v) (a_u = 2πum/M, b_v = 2πvn/N): the
1-D DHT along the rows, the real FFT's cos/sin rows along the columns.
"""

from __future__ import annotations

import torch

from .. import operators
from ..factorization import Entries, Factorization, separable, split_positions
from .base import SpectralBasis, radial_frequency
from .registry import register_basis


def mirrored(x: torch.Tensor) -> torch.Tensor:
    """x at (−u mod M, reversed column order): Hermitian symmetry between the two halves of a spectrum.

    For a real M × N matrix, F(u, v) = conj F(−u mod M, N − v): the columns ⌊N/2⌋+1 … N−1 of a
    real function of F (its real or imaginary part) are ``mirrored`` columns 1 … N−⌊N/2⌋−1 of the
    half spectrum (``rfft2``'s output), and the other way round.
    """
    return torch.roll(torch.flip(x, dims=(-2, -1)), 1, dims=-2)


def fft_axis_frequency(size: int) -> torch.Tensor:
    """φ_u = 2·min(u, K−u)/K: index u of a length-K DFT axis is |u| cycles per K samples (u ≡ u − K)."""
    u = torch.arange(size)
    return 2 * torch.minimum(u, size - u) / size


@register_basis("dht")
class HartleyBasis(SpectralBasis):
    """Standard 2-D discrete Hartley transform, H = Re F − Im F with F = fft2(W)/√(MN).

    One real FFT (``rfft2``): the columns v ≤ N/2 are Re F − Im F of the half spectrum, the others
    Re F + Im F at (−u, N − v) (Hermitian symmetry, :func:`mirrored`).
    """

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        half = torch.fft.rfft2(weight, norm="ortho")
        cols = weight.shape[-1]
        return torch.cat([half.real - half.imag, mirrored((half.real + half.imag)[..., 1 : cols - cols // 2])], dim=-1)

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        return self._forward(coefficients)

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        """cas(2π(um/M + vn/N)) oscillates at the DFT frequencies of (u, v): see :func:`fft_axis_frequency`."""
        self.check_shape(rows, cols)
        return radial_frequency(fft_axis_frequency(rows), fft_axis_frequency(cols))

    def factorization(self, rows, cols, positions):
        u, v = split_positions(positions, cols)
        j = torch.arange(u.numel())
        row_op, col_op = operators.hartley(rows), operators.rfft(cols, "ortho")
        p_cos, w_cos = col_op.cos_slot(v)
        p_sin, w_sin = col_op.sin_slot(v)
        q_plus, _ = row_op.slot(u)
        q_minus, _ = row_op.slot((rows - u) % rows)
        entries = Entries.concat(
            Entries(q_plus, p_cos, j, w_cos),  # cas(a_u) · cos(b_v)
            Entries(q_minus, p_sin, j, w_sin),  # cas(a_{-u}) · sin(b_v)
        )
        return Factorization(row_op.T, col_op, entries)


@register_basis("dht_separable")
class SeparableHartleyBasis(SpectralBasis):
    """Separable 2-D DHT, H = C_M W C_N with C_K[k,n] = cas(2πkn/K)/√K (the SSH reference variant)."""

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        rows, cols = weight.shape[-2:]
        return operators.hartley(cols).coefficients(operators.hartley(rows).coefficients(weight, dim=-2), dim=-1)

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        return self._forward(coefficients)

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        """Row u of C_K, cas(2πum/K), oscillates at DFT frequency u: see :func:`fft_axis_frequency`."""
        self.check_shape(rows, cols)
        return radial_frequency(fft_axis_frequency(rows), fft_axis_frequency(cols))

    def factorization(self, rows, cols, positions):
        return separable(operators.hartley(rows), operators.hartley(cols), positions)
