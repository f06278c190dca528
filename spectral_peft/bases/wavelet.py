"""Separable multi-level 2-D discrete wavelet basis (WaveFT), periodized and orthonormal.

One level along an axis of even length L with an orthogonal filter pair (h = dec_lo,
g = dec_hi) of length F, in PyWavelets' "periodization" convention:

    a[k] = Σ_j h[j]·x[(2k + F/2 − j) mod L],   d[k] = Σ_j g[j]·x[(2k + F/2 − j) mod L],

and the axis is laid out as [a | d]. The 2-D transform applies this along rows and columns,
giving the quadrants [[aa, ad], [da, dd]], and recurses on the top-left ``aa`` block for each
further level. The result equals ``pywt.coeffs_to_array(pywt.wavedec2(W, wavelet,
mode="periodization", level=level))[0]``. Periodization of an orthogonal filter bank is an
orthogonal matrix, so the inverse is the adjoint (a scatter of the same windows).

Levels: level ℓ needs both M and N divisible by 2^ℓ. The default is the deepest such level,
capped at ``pywt.dwt_max_level(min(M, N), F)`` (deeper levels only wrap the filter around the
signal) and at least 1.
"""

from __future__ import annotations

import numpy as np
import pywt
import torch

from .. import operators
from ..factorization import Entries, Factorization, split_positions
from .base import SpectralBasis
from .registry import register_basis


def _divisible_levels(size: int) -> int:
    """Largest ℓ with size divisible by 2^ℓ."""
    level = 0
    while size % 2 == 0 and size > 0:
        size //= 2
        level += 1
    return level


def _max_useful_level(size: int, filter_len: int) -> int:
    """``pywt.dwt_max_level``: the largest ℓ with (F − 1)·2^ℓ <= size (0 for F < 2)."""
    if filter_len < 2:
        return 0
    level = 0
    while (filter_len - 1) << (level + 1) <= size:
        level += 1
    return level


@register_basis("wavelet")
class WaveletBasis(SpectralBasis):
    """Multi-level separable 2-D DWT with an orthogonal PyWavelets family, periodization mode.

    Args:
        wavelet: an orthogonal PyWavelets family member (``haar``, ``db1``–``db38``,
            ``sym2``–``sym20``, ``coif1``–``coif17``). Biorthogonal families are rejected.
        level: number of decomposition levels (>= 1), or None for the deepest level that
            both dimensions allow (see the module docstring).
    """

    def __init__(self, wavelet: str = "db4", level: int | None = None):
        try:
            family = pywt.Wavelet(wavelet)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"unknown wavelet {wavelet!r}; use an orthogonal PyWavelets family: "
                f"{', '.join(pywt.wavelist('haar') + pywt.wavelist('db')[:3] + pywt.wavelist('sym')[:2] + pywt.wavelist('coif')[:2])}, ..."
            ) from err
        if not family.orthogonal:
            raise ValueError(
                f"wavelet {wavelet!r} is not orthogonal (the basis must be orthonormal); "
                "use haar, db*, sym* or coif*"
            )
        if level is not None and (not isinstance(level, (int, np.integer)) or isinstance(level, bool) or level < 1):
            raise ValueError(f"level must be an integer >= 1 or None, got {level!r}")
        self.wavelet = wavelet
        self.level = None if level is None else int(level)
        self.filter_len = family.dec_len

    def options(self) -> dict:
        return {"wavelet": self.wavelet, "level": self.level}

    def levels_for(self, rows: int, cols: int) -> int:
        """The number of levels used for an ``rows × cols`` matrix (raises if impossible)."""
        allowed = min(_divisible_levels(rows), _divisible_levels(cols))
        if allowed < 1:
            raise ValueError(
                f"wavelet basis needs both dimensions even (periodized DWT halves them), got {rows}x{cols}"
            )
        if self.level is None:
            cap = _max_useful_level(min(rows, cols), self.filter_len)
            return max(1, min(allowed, cap))
        if self.level > allowed:
            raise ValueError(
                f"wavelet level {self.level} needs both dimensions divisible by 2**{self.level}="
                f"{2 ** self.level}, got {rows}x{cols}; the deepest level this shape allows is {allowed}"
            )
        return self.level

    def check_shape(self, rows: int, cols: int) -> None:
        super().check_shape(rows, cols)
        self.levels_for(rows, cols)

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        rows, cols = weight.shape[-2:]
        out = weight
        for level in range(self.levels_for(rows, cols)):  # level j transforms the top-left block
            r, c = rows >> level, cols >> level
            block = operators.dwt_level(self.wavelet, r).coefficients(out[..., :r, :c], dim=-2)
            block = operators.dwt_level(self.wavelet, c).coefficients(block, dim=-1)
            if level == 0:
                out = block
            else:
                out[..., :r, :c] = block
        return out

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        levels = self.levels_for(*coefficients.shape[-2:])
        return self._synthesize_pyramid(coefficients.clone() if levels > 1 else coefficients, levels)

    def _inverse_overwriting(self, coefficients: torch.Tensor) -> torch.Tensor:
        """:meth:`inverse` of a float32/float64 matrix that may be overwritten (the fast routes
        scatter S into a buffer of their own for it): no working copy."""
        return self._synthesize_pyramid(coefficients, self.levels_for(*coefficients.shape[-2:]))

    def _synthesize_pyramid(self, out: torch.Tensor, levels: int) -> torch.Tensor:
        """The 2-D pyramid's synthesis, overwriting the deeper levels' blocks of ``out``."""
        rows, cols = out.shape[-2:]
        for level in reversed(range(levels)):  # from the deepest block outwards
            r, c = rows >> level, cols >> level
            block = operators.dwt_level(self.wavelet, c).synthesize(out[..., :r, :c], dim=-1)
            if level == 0:  # the whole array: free the working copy before the last pass (ΔW's peak)
                del out
                return operators.dwt_level(self.wavelet, r).synthesize(block, dim=-2)
            out[..., :r, :c] = operators.dwt_level(self.wavelet, r).synthesize(block, dim=-2)
        return out

    def factorization(self, rows, cols, positions):
        """A level-j coefficient of the 2-D pyramid is the outer product of 1-D level-j functions.

        left/right are the all-levels 1-D cascades (``operators.wavelet_cascade``) and each
        coefficient points into its level's block; ΔW itself is rebuilt by :meth:`inverse`.
        """
        levels = self.levels_for(rows, cols)
        row_op = operators.wavelet_cascade(self.wavelet, rows, levels)
        col_op = operators.wavelet_cascade(self.wavelet, cols, levels)
        u, v = split_positions(positions, cols)

        def level_of(index, size):  # largest j <= levels with index < size / 2^(j-1)
            j = torch.ones_like(index)
            for level in range(2, levels + 1):
                j = torch.where(index < (size >> (level - 1)), level, j)
            return j

        level = torch.minimum(level_of(u, rows), level_of(v, cols))  # 1-based level of the 2-D block
        n = u.numel()
        entries = Entries(row_op.slot_in_level(level, u), col_op.slot_in_level(level, v), torch.arange(n), torch.ones(n))
        return Factorization(row_op.T, col_op, entries, inverse=self._inverse_overwriting)

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        """Scale of each position of the pyramid, as a frequency relative to Nyquist.

        Position (i, j) belongs to the level-ℓ quadrant with the smallest ℓ for which i ≥ M/2^ℓ or
        j ≥ N/2^ℓ (else to the approximation block of the deepest level L). Along each axis it is a
        detail of level ℓ (band [2^-ℓ, 2^-ℓ+1] of Nyquist, centre φ = 1.5·2^-ℓ) or an
        approximation (band [0, 2^-ℓ], centre φ = 0.5·2^-ℓ); the map is the radial combination.
        """
        levels = self.levels_for(rows, cols)
        i = torch.arange(rows)[:, None].expand(rows, cols)
        j = torch.arange(cols)[None, :].expand(rows, cols)
        level = torch.full((rows, cols), levels)
        for ell in range(levels, 0, -1):  # finer levels overwrite: the smallest ℓ wins
            outside = (i >= rows >> ell) | (j >= cols >> ell)
            level = torch.where(outside, torch.full_like(level, ell), level)
        scale = 2.0 ** (-level.double())
        phi_rows = torch.where(i >= rows >> level, 1.5, 0.5) * scale
        phi_cols = torch.where(j >= cols >> level, 1.5, 0.5) * scale
        return torch.sqrt((phi_rows**2 + phi_cols**2) / 2)
