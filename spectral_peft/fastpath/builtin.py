"""Factorizations of the built-in bases (see :mod:`.factorization` for the contract).

Notation: a_u = 2πu·m/M (rows), b_v = 2πv·n/N (columns), positions q = (u, v).

* ``dht_separable``  C_M S C_N: separable, left = right = DHT (pair layout, one FFT each).
* ``dct``            D_Mᵀ S D_N: separable, left = DCT-IIᵀ, right = DCT-II (Makhoul pair layout).
* ``identity``       S itself: separable, no transform.
* ``wavelet``        a coefficient of the level-j blocks of the 2-D pyramid is the outer product
                     of 1-D level-j functions, so left/right are the all-levels 1-D cascades and
                     each coefficient points into its level's block. ΔW itself (merged route) is
                     rebuilt by a banded-matmul pyramid synthesis, equal to ``basis.inverse``.
* ``dht``            cas(a+b) = cas(a)·cos(b) + cas(−a)·sin(b): left = DHT (column u, and
                     column −u for the second term), right = the real FFT (cos/sin rows).
* ``dft``            the real layout's elements are √2·cos(a+b) (canonical), √2·sin(a+b)
                     (partner) and cos(a)cos(b) (self-conjugate), each over √(MN);
                     cos(a+b) = cos a cos b − sin a sin b, sin(a+b) = sin a cos b + cos a sin b,
                     with left = right = real FFT. FourierFT mode: Re(ifft2(S)) = Σ S·cos(a+b)/(MN).
"""

from __future__ import annotations

import math

import torch

from ..bases.cosine import CosineBasis
from ..bases.fourier import FourierBasis, hermitian_masks
from ..bases.hartley import HartleyBasis, SeparableHartleyBasis
from ..bases.identity import IdentityBasis
from ..bases.wavelet import WaveletBasis
from .factorization import Entries, Factorization, register_factorization, separable
from .operators import (
    CosinePairOp,
    DwtLevel,
    HartleyPairOp,
    IdentityOp,
    RfftOp,
    WaveletCascadeOp,
    cosine_slot,
    hartley_slot,
    rfft_cos_slot,
    rfft_sin_slot,
)


def _split(positions: torch.Tensor, cols: int):
    positions = positions.reshape(-1).cpu()
    return torch.div(positions, cols, rounding_mode="floor"), positions % cols


def _separable_slots(left, right, slot_rows, slot_cols, rows, cols, positions):
    u, v = _split(positions, cols)
    q, sign_q = slot_rows(u, rows)
    p, sign_p = slot_cols(v, cols)
    return Factorization(left, right, Entries(q, p, torch.arange(u.numel()), sign_q * sign_p))


@register_factorization(SeparableHartleyBasis)
def _dht_separable(basis, rows, cols, positions):
    return _separable_slots(
        HartleyPairOp(rows).T, HartleyPairOp(cols), hartley_slot, hartley_slot, rows, cols, positions
    )


@register_factorization(CosineBasis)
def _dct(basis, rows, cols, positions):
    return _separable_slots(
        CosinePairOp(rows).T, CosinePairOp(cols), cosine_slot, cosine_slot, rows, cols, positions
    )


@register_factorization(IdentityBasis)
def _identity(basis, rows, cols, positions):
    factorization = separable(IdentityOp(rows), IdentityOp(cols), positions)
    factorization.inverse = _same  # ΔW = S: a scatter, no transform
    return factorization


def _same(coefficients: torch.Tensor) -> torch.Tensor:
    return coefficients


@register_factorization(WaveletBasis)
def _wavelet(basis, rows, cols, positions):
    levels = basis.levels_for(rows, cols)
    left = WaveletCascadeOp.shared(basis.wavelet, rows, levels)
    right = WaveletCascadeOp.shared(basis.wavelet, cols, levels)
    u, v = _split(positions, cols)

    def level_of(index, size):  # largest j <= levels with index < size / 2^(j-1)
        j = torch.ones_like(index)
        for level in range(2, levels + 1):
            j = torch.where(index < (size >> (level - 1)), level, j)
        return j

    level = torch.minimum(level_of(u, rows), level_of(v, cols))  # 1-based level of the 2-D block
    n = u.numel()
    entries = Entries(left.slot(level, u), right.slot(level, v), torch.arange(n), torch.ones(n))
    return Factorization(left.T, right, entries, inverse=_PyramidSynthesis(left, right))


class _PyramidSynthesis:
    """B⁻¹ of the multi-level 2-D DWT (pywt pyramid layout) with the banded levels of the cascades."""

    def __init__(self, rows_op: WaveletCascadeOp, cols_op: WaveletCascadeOp):
        self.rows_op, self.cols_op = rows_op, cols_op
        self._perms: dict = {}

    def _standard_index(self, lvl: DwtLevel, index: torch.Tensor) -> torch.Tensor:
        key = (id(lvl), index.device)
        if key not in self._perms:
            half = lvl.length // 2
            std = torch.arange(lvl.length)
            perm = torch.empty_like(std)
            perm[lvl.slot(std >= half, std % half)] = std  # blockwise position -> standard index
            self._perms[key] = perm.to(index.device)[index]
        return self._perms[key]

    def _synthesis(self, lvl: DwtLevel, z: torch.Tensor) -> torch.Tensor:
        _, _, index, matrix = lvl.consts(z.device, z.dtype)
        # standard [a | d] → blockwise, folded into the synthesis gather
        return lvl.synthesis(z, self._standard_index(lvl, index), matrix)

    def _rows_in_place(self, lvl: DwtLevel, z: torch.Tensor) -> None:
        """Synthesis along the last dimension of ``z``, written back into ``z``, a few rows at a time."""
        step = max(64, (1 << 19) // z.shape[-1])  # ~2 MiB of gathered windows per piece
        for start in range(0, z.shape[0], step):
            part = z[start : start + step]
            part.copy_(self._synthesis(lvl, part))

    def __call__(self, coefficients: torch.Tensor) -> torch.Tensor:
        """B⁻¹(S) for a 2-D S; overwrites S (the caller passes a fresh tensor) and returns it.

        Level by level from the deepest: synthesis along the rows of the top-left block, then along
        its columns (transposed once), a few hundred rows at a time so that the gathered windows
        stay small.
        """
        out = coefficients
        for row_lvl, col_lvl in reversed(list(zip(self.rows_op.levels, self.cols_op.levels))):
            rows, cols = row_lvl.length, col_lvl.length
            block = out[:rows, :cols]
            self._rows_in_place(col_lvl, block)
            columns = block.T.contiguous()
            self._rows_in_place(row_lvl, columns)
            block.copy_(columns.T)
            del columns
        return out


@register_factorization(HartleyBasis)
def _dht(basis, rows, cols, positions):
    u, v = _split(positions, cols)
    j = torch.arange(u.numel())
    p_cos, w_cos = rfft_cos_slot(v, cols)
    p_sin, w_sin = rfft_sin_slot(v, cols)
    q_plus, _ = hartley_slot(u, rows)
    q_minus, _ = hartley_slot((rows - u) % rows, rows)
    entries = Entries.concat(
        Entries(q_plus, p_cos, j, w_cos),  # cas(a_u) · cos(b_v)
        Entries(q_minus, p_sin, j, w_sin),  # cas(a_{-u}) · sin(b_v)
    ).drop_zeros()
    return Factorization(HartleyPairOp(rows).T, RfftOp(cols, "ortho"), entries)


@register_factorization(FourierBasis)
def _dft(basis, rows, cols, positions):
    u, v = _split(positions, cols)
    j = torch.arange(u.numel())
    qc, wqc = rfft_cos_slot(u, rows)
    qs, wqs = rfft_sin_slot(u, rows)
    pc, wpc = rfft_cos_slot(v, cols)
    ps, wps = rfft_sin_slot(v, cols)
    if basis.fourierft_compat:
        # Re(ifft2(S)) = Σ S(u,v) cos(a+b) / (MN);  operators unscaled
        scale = torch.full(u.shape, 1.0 / (rows * cols), dtype=torch.float64)
        cos_w, sin_w = scale, torch.zeros_like(scale)
        left, right = RfftOp(rows, "backward").T, RfftOp(cols, "backward")
        entries = Entries.concat(
            Entries(qc, pc, j, cos_w * wqc * wpc),  # cos a cos b
            Entries(qs, ps, j, -cos_w * wqs * wps),  # − sin a sin b
        )
        return Factorization(left, right, entries.drop_zeros())
    self_conj, canonical, partner = (m.reshape(-1)[positions.reshape(-1).cpu()] for m in hermitian_masks(rows, cols, dtype=torch.float64))
    root2 = math.sqrt(2.0)
    # operators carry 1/√M and 1/√N; canonical √2·cos(a+b), partner √2·sin(a+b), self cos a cos b
    a = self_conj + root2 * canonical  # weight of cos(a+b)
    b = root2 * partner  # weight of sin(a+b)
    entries = Entries.concat(
        Entries(qc, pc, j, a * wqc * wpc),  # cos(a+b) ∋ cos a cos b
        Entries(qs, ps, j, -a * wqs * wps),  # cos(a+b) ∋ −sin a sin b
        Entries(qs, pc, j, b * wqs * wpc),  # sin(a+b) ∋ sin a cos b
        Entries(qc, ps, j, b * wqc * wps),  # sin(a+b) ∋ cos a sin b
    ).drop_zeros()
    left = RfftOp(rows, "ortho").T
    right = RfftOp(cols, "ortho")
    return Factorization(left, right, entries)
