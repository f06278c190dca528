"""Orthonormal 2-D DCT-II basis (LoCA / MaCP).

C(u,v) = s_u s_v Σ_m Σ_n W(m,n) cos(πu(2m+1)/(2M)) cos(πv(2n+1)/(2N)),
s_0 = √(1/K), s_k = √(2/K) for a length-K axis; equals ``scipy.fft.dctn(W, norm="ortho")``.
"""

from __future__ import annotations

import torch

from .base import SpectralBasis, radial_frequency
from .registry import register_basis
from .transforms1d import dct_1d, idct_1d


@register_basis("dct")
class CosineBasis(SpectralBasis):
    """Orthonormal type-II 2-D discrete cosine transform; the inverse is the 2-D DCT-III."""

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        return dct_1d(dct_1d(weight, dim=-2), dim=-1)

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        return idct_1d(idct_1d(coefficients, dim=-1), dim=-2)

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        """Index u of a length-K axis oscillates at u/(2K) cycles per sample: φ_u = u/K of Nyquist."""
        self.check_shape(rows, cols)
        return radial_frequency(torch.arange(rows) / rows, torch.arange(cols) / cols)
