"""Identity basis, B = I: the adapter trains n entries of W directly (SHiRA-style sparse update).

It is the control that tells whether a spectral basis helps at all.
"""

from __future__ import annotations

import dataclasses

import torch

from .. import operators
from ..factorization import separable
from .base import SpectralBasis
from .registry import register_basis


def _unchanged(coefficients: torch.Tensor) -> torch.Tensor:
    return coefficients


@register_basis("identity")
class IdentityBasis(SpectralBasis):
    """C = W."""

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.clone()

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        return coefficients.clone()

    def factorization(self, rows, cols, positions):
        # ΔW = S: rebuilding it is the scatter alone, no transform
        fact = separable(operators.identity(rows), operators.identity(cols), positions)
        return dataclasses.replace(fact, inverse=_unchanged)
