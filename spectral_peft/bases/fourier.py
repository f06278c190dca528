"""Fourier basis: a real orthonormal layout of the 2-D DFT, and FourierFT's parameterization.

Real layout (default, ``dft``)
------------------------------
For real W the orthonormal spectrum F = fft2(W)/√(MN) is Hermitian, F(u,v) = conj F(−u,−v), so
half of it is redundant. Positions q = (u,v) fall into

* self-conjugate positions (2u ≡ 0 mod M and 2v ≡ 0 mod N), where F is real: C(q) = Re F(q);
* conjugate pairs {p, p̄}. The canonical member p has 0 < v < N/2, or v ∈ {0, N/2} and
  0 < u < M/2. It stores C(p) = √2·Re F(p) and its partner stores C(p̄) = √2·Im F(p).

That gives exactly M·N real coefficients, Σ C² = Σ |F|² = ‖W‖², and no parameter is wasted on
a duplicate conjugate frequency. With masks S (self), K (canonical), P (partner) and
C̃(u,v) = C(−u,−v):  Re F = S·C + (K·C + P·C̃)/√2,  Im F = (K·C̃ − P·C)/√2.

FourierFT compatibility (``get_basis("dft", fourierft_compat=True)``)
---------------------------------------------------------------------
FourierFT (arXiv 2405.03003; Hugging Face peft's ``FourierFT``) builds ΔW = α·Re(ifft2(S)) from
a real sparse S with torch's default "backward" normalisation (a 1/(MN) factor). This map
keeps only the cosine (even) part of S, so two conjugate positions carry the same degree of
freedom and the map is not invertible. In this mode ``inverse(S) = Re(ifft2(S))`` exactly, and
``forward`` is its adjoint, which is the same formula (the map is self-adjoint); ``invertible``
and ``orthonormal`` are ``False``. Use it to reproduce published FourierFT numbers.

Computation
-----------
Both directions use one real 2-D FFT (``rfft2`` / ``irfft2``, the half spectrum v <= N/2): the
canonical columns 0 < v < N/2 hold √2·Re F, the partner columns v > N/2 are √2·Im F read at
(−u, N − v) (:func:`~spectral_peft.bases.hartley.mirrored`), and the edge columns v ∈ {0, N/2}
use the same layout along their rows.

Fast routes
-----------
With a_u = 2πum/M and b_v = 2πvn/N the basis elements are √2·cos(a+b) (canonical), √2·sin(a+b)
(partner) and cos(a)·cos(b) (self-conjugate), each over √(MN); by cos(a+b) = cos a cos b − sin a sin b
and sin(a+b) = sin a cos b + cos a sin b they are sums of separable terms of the real FFT's cos/sin
rows (``operators.rfft``) along both axes. FourierFT mode: Re(ifft2(S)) = Σ S·cos(a+b)/(MN).
"""

from __future__ import annotations

import math

import torch

from .. import operators
from ..factorization import Entries, Factorization, split_positions
from .base import SpectralBasis, radial_frequency
from .hartley import fft_axis_frequency, mirrored
from .registry import register_basis

_SQRT2 = math.sqrt(2.0)


def hermitian_masks(rows: int, cols: int, device=None, dtype=torch.float32):
    """Float masks (self-conjugate, canonical, partner) of shape (rows, cols) for the real DFT layout."""
    u = torch.arange(rows, device=device).unsqueeze(-1)
    v = torch.arange(cols, device=device).unsqueeze(0)
    u_edge = (2 * u) % rows == 0  # u ∈ {0, M/2}
    v_edge = (2 * v) % cols == 0  # v ∈ {0, N/2}
    self_conjugate = u_edge & v_edge
    canonical = ((v > 0) & (2 * v < cols)) | (v_edge & (u > 0) & (2 * u < rows))
    partner = ~(self_conjugate | canonical)
    return self_conjugate.to(dtype), canonical.to(dtype), partner.to(dtype)


def _edge_columns(cols: int) -> list[int]:
    """The columns v with 2v ≡ 0 (mod N): 0, and N/2 for even N."""
    return [0, cols // 2] if cols % 2 == 0 and cols > 1 else [0]


def _column_masks(rows: int, device, dtype):
    """(self-conjugate, canonical, partner) masks of the rows of an edge column (the 1-D layout)."""
    self_conj, canonical, partner = hermitian_masks(rows, 1, device, dtype)
    return self_conj[:, 0], canonical[:, 0], partner[:, 0]


@register_basis("dft")
class FourierBasis(SpectralBasis):
    """Real orthonormal 2-D DFT (see the module docstring), or FourierFT's Re(ifft2(S)).

    Args:
        fourierft_compat: if True, ``inverse(S) = Re(torch.fft.ifft2(S))`` exactly as FourierFT
            computes ΔW (not invertible, not orthonormal); ``forward`` is its adjoint.
    """

    def __init__(self, fourierft_compat: bool = False):
        if not isinstance(fourierft_compat, bool):
            raise TypeError(f"fourierft_compat must be a bool, got {fourierft_compat!r}")
        self.fourierft_compat = fourierft_compat
        self.orthonormal = not fourierft_compat
        self.invertible = not fourierft_compat

    def options(self) -> dict:
        return {"fourierft_compat": self.fourierft_compat}

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.fourierft_compat:
            return torch.fft.ifft2(weight).real
        rows, cols = weight.shape[-2:]
        half = torch.fft.rfft2(weight, norm="ortho")  # F(u, v) for v <= N/2
        # canonical columns 0 < v < N/2: √2·Re F; partner columns v > N/2: −√2·Im F = √2·Im F(−u, N − v)
        out = _SQRT2 * torch.cat([half.real, mirrored(half.imag[..., 1 : cols - cols // 2])], dim=-1)
        self_conj, canonical, partner = _column_masks(rows, weight.device, weight.dtype)
        for v in _edge_columns(cols):  # v ∈ {0, N/2}: the real layout of a Hermitian column
            column = half[..., v]
            out[..., v] = column.real * (self_conj + _SQRT2 * canonical) - _SQRT2 * partner * column.imag
        return out

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        if self.fourierft_compat:
            return torch.fft.ifft2(coefficients).real
        c = coefficients
        rows, cols = c.shape[-2:]
        # canonical columns 0 < v < N/2: F = (C(u, v) + i·C(−u, N − v)) / √2, the partner mirrored in
        real = c[..., : cols // 2 + 1] / _SQRT2
        imag = torch.zeros_like(real)
        imag[..., 1 : cols - cols // 2] = mirrored(c[..., cols // 2 + 1 :]) / _SQRT2
        self_conj, canonical, partner = _column_masks(rows, c.device, c.dtype)
        for v in _edge_columns(cols):
            column = c[..., v]
            column_conj = torch.roll(torch.flip(column, dims=(-1,)), 1, dims=-1)  # C(−u, v)
            real[..., v] = self_conj * column + (canonical * column + partner * column_conj) / _SQRT2
            imag[..., v] = (canonical * column_conj - partner * column) / _SQRT2
        return torch.fft.irfft2(torch.complex(real, imag), s=(rows, cols), norm="ortho")

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        """Position (u, v) holds a cosine or sine of frequency (u, v) in both layouts: see
        :func:`~spectral_peft.bases.hartley.fft_axis_frequency`."""
        self.check_shape(rows, cols)
        return radial_frequency(fft_axis_frequency(rows), fft_axis_frequency(cols))

    def factorization(self, rows, cols, positions):
        u, v = split_positions(positions, cols)
        j = torch.arange(u.numel())
        norm = "backward" if self.fourierft_compat else "ortho"
        row_op, col_op = operators.rfft(rows, norm), operators.rfft(cols, norm)
        qc, wqc = row_op.cos_slot(u)
        qs, wqs = row_op.sin_slot(u)
        pc, wpc = col_op.cos_slot(v)
        ps, wps = col_op.sin_slot(v)
        if self.fourierft_compat:  # Re(ifft2(S)) = Σ S(u,v) cos(a+b) / (MN), operators unscaled
            cos_w = torch.full(u.shape, 1.0 / (rows * cols), dtype=torch.float64)
            sin_w = torch.zeros_like(cos_w)
        else:  # the operators carry 1/√M and 1/√N
            flat = torch.as_tensor(positions).reshape(-1).cpu()
            self_conj, canonical, partner = (m.reshape(-1)[flat] for m in hermitian_masks(rows, cols, dtype=torch.float64))
            cos_w = self_conj + _SQRT2 * canonical  # weight of cos(a+b)
            sin_w = _SQRT2 * partner  # weight of sin(a+b)
        entries = Entries.concat(
            Entries(qc, pc, j, cos_w * wqc * wpc),  # cos(a+b) ∋ cos a cos b
            Entries(qs, ps, j, -cos_w * wqs * wps),  # cos(a+b) ∋ −sin a sin b
            Entries(qs, pc, j, sin_w * wqs * wpc),  # sin(a+b) ∋ sin a cos b
            Entries(qc, ps, j, sin_w * wqc * wps),  # sin(a+b) ∋ cos a sin b
        )
        return Factorization(row_op.T, col_op, entries)
