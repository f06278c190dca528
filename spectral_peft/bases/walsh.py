"""Orthonormal 2-D Walsh–Hadamard basis (QWHA), for power-of-two dimensions.

    C = H_M W H_N,      H_K = hadamard(K) / √K   (Sylvester construction, symmetric, H_K² = I)

``order="natural"`` uses the Sylvester (Hadamard) row order, H_{2K} = [[H_K, H_K], [H_K, −H_K]];
``order="sequency"`` reorders the rows by their number of sign changes (the Walsh order), so
that coefficient index k is the k-th "frequency", like the DCT's. Both are orthonormal and
self-inverse up to the order permutation (natural: B⁻¹ = B).

The 1-D transform is ``operators.walsh_hadamard`` (Sylvester's H_K as a Kronecker product of
small Hadamard matrices, one small matmul per factor). The sequency order is a fixed
permutation of the natural order: the Walsh row of sequency s is the Hadamard row
bitreverse(gray(s)), with gray(s) = s ⊕ (s >> 1). Fast route: the basis is separable,
C = A_M W A_Nᵀ, so a coefficient at sequency position (s, t) is the natural-order outer product of rows
perm(s) and perm(t): ``separable(walsh_hadamard(M), walsh_hadamard(N), positions mapped to natural)``.

Frequency per position: the sequency s of a row counts its sign changes, ≈ 2× its frequency in
cycles per length, so the per-axis frequency relative to Nyquist is s/K (see
:meth:`SpectralBasis.frequency`).
"""

from __future__ import annotations

import functools

import torch

from .. import operators
from ..factorization import separable, split_positions
from .base import SpectralBasis, radial_frequency
from .registry import register_basis

ORDERS = ("natural", "sequency")


def _is_power_of_two(k: int) -> bool:
    return k >= 1 and k & (k - 1) == 0


def _bit_reverse(k: int, bits: int) -> int:
    return int(format(k, f"0{bits}b")[::-1], 2) if bits else 0


@functools.lru_cache(maxsize=64)
def natural_row_of_sequency(size: int) -> tuple[int, ...]:
    """For each sequency s (0..size−1), the natural-order Hadamard row with s sign changes."""
    bits = size.bit_length() - 1
    return tuple(_bit_reverse(s ^ (s >> 1), bits) for s in range(size))


@functools.lru_cache(maxsize=64)
def sequency_of_natural_row(size: int) -> tuple[int, ...]:
    """Sign changes of each natural-order Hadamard row (the inverse permutation)."""
    out = [0] * size
    for s, k in enumerate(natural_row_of_sequency(size)):
        out[k] = s
    return tuple(out)


@register_basis("wht")
class WalshHadamardBasis(SpectralBasis):
    """C = H_M W H_N with the orthonormal Hadamard matrices (both dimensions powers of two).

    Args:
        order: ``"natural"`` (Sylvester/Hadamard order, matches ``scipy.linalg.hadamard``) or
            ``"sequency"`` (Walsh order: rows sorted by their number of sign changes).
    """

    def __init__(self, order: str = "sequency"):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.order = order

    def options(self) -> dict:
        return {"order": self.order}

    def check_shape(self, rows: int, cols: int) -> None:
        super().check_shape(rows, cols)
        bad = [f"{name}={k}" for name, k in (("rows", rows), ("cols", cols)) if not _is_power_of_two(k)]
        if bad:
            raise ValueError(
                f"wht basis needs both dimensions to be powers of two (1, 2, 4, 8, ...), got {rows}x{cols} "
                f"({', '.join(bad)}); for other shapes use patchwise blocks of a power-of-two size, e.g. "
                "get_basis('patchwise', inner='wht', block=...)"
            )

    def _permutation(self, size: int, device) -> torch.Tensor:
        """Natural row of each sequency index (the identity in natural order)."""
        if self.order == "natural":
            return torch.arange(size, device=device)
        return torch.tensor(natural_row_of_sequency(size), device=device)

    def _transform(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        natural = operators.walsh_hadamard(x.shape[dim]).coefficients(x, dim=dim)
        if self.order == "natural":
            return natural
        return natural.index_select(dim, self._permutation(x.shape[dim], x.device))

    def _synthesize(self, c: torch.Tensor, dim: int) -> torch.Tensor:
        if self.order == "sequency":  # put coefficient s back at its natural row perm[s]
            perm = self._permutation(c.shape[dim], c.device)
            c = torch.zeros_like(c).index_copy(dim if dim >= 0 else c.dim() + dim, perm, c)
        return operators.walsh_hadamard(c.shape[dim]).synthesize(c, dim=dim)

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self._transform(self._transform(weight, -2), -1)

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        return self._synthesize(self._synthesize(coefficients, -1), -2)

    def factorization(self, rows, cols, positions):
        u, v = split_positions(positions, cols)
        natural = self._permutation(rows, "cpu")[u] * cols + self._permutation(cols, "cpu")[v]
        return separable(operators.walsh_hadamard(rows), operators.walsh_hadamard(cols), natural)

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        self.check_shape(rows, cols)

        def axis(k: int) -> torch.Tensor:
            if self.order == "sequency":
                seq = torch.arange(k, dtype=torch.float64)
            else:
                seq = torch.tensor(sequency_of_natural_row(k), dtype=torch.float64)
            return seq / k

        return radial_frequency(axis(rows), axis(cols))
