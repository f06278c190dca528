"""Orthonormal 2-D DCT-II basis (LoCA / MaCP).

C(u,v) = s_u s_v Σ_m Σ_n W(m,n) cos(πu(2m+1)/(2M)) cos(πv(2n+1)/(2N)),
s_0 = √(1/K), s_k = √(2/K) for a length-K axis; equals ``scipy.fft.dctn(W, norm="ortho")``.
Separable: C = D_M W D_Nᵀ with the 1-D DCT-II ``operators.cosine``.
"""

from __future__ import annotations

import torch

from .. import operators
from ..factorization import separable
from .base import SpectralBasis, radial_frequency
from .registry import register_basis


@register_basis("dct")
class CosineBasis(SpectralBasis):
    """Orthonormal type-II 2-D discrete cosine transform; the inverse is the 2-D DCT-III."""

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        rows, cols = weight.shape[-2:]
        return operators.cosine(cols).coefficients(operators.cosine(rows).coefficients(weight, dim=-2), dim=-1)

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        rows, cols = coefficients.shape[-2:]
        return operators.cosine(rows).synthesize(operators.cosine(cols).synthesize(coefficients, dim=-1), dim=-2)

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        """Index u of a length-K axis oscillates at u/(2K) cycles per sample: φ_u = u/K of Nyquist."""
        self.check_shape(rows, cols)
        return radial_frequency(torch.arange(rows) / rows, torch.arange(cols) / cols)

    def factorization(self, rows, cols, positions):
        return separable(operators.cosine(rows), operators.cosine(cols), positions)
