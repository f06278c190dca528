"""Identity basis, B = I: the adapter trains n entries of W directly (SHiRA-style sparse update).

It is the control that tells whether a spectral basis helps at all.
"""

from __future__ import annotations

import torch

from .base import SpectralBasis
from .registry import register_basis


@register_basis("identity")
class IdentityBasis(SpectralBasis):
    """C = W."""

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.clone()

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        return coefficients.clone()
