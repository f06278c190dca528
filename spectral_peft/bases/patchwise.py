"""Patchwise basis: any registered basis applied to each bm × bn block (SHFIN), optionally hierarchical.

Plain (``levels=1``): W is cut into a grid of bm × bn blocks and the inner basis B transforms
each block independently; the coefficients of block (i, j) sit where the block sits::

    C[i·bm:(i+1)·bm, j·bn:(j+1)·bn] = B(W[i·bm:(i+1)·bm, j·bn:(j+1)·bn])

A block-diagonal arrangement of orthonormal maps is orthonormal, so the result is an orthonormal
basis whenever B is (``orthonormal``/``invertible`` follow the inner basis).

Hierarchical (``levels=L >= 2``, global to local): after the patchwise transform, the (0, 0)
coefficient of every block (the block's mean direction for DCT, DFT, DHT, WHT and wavelets)
forms an (M/bm) × (N/bn) grid; that grid is transformed again, patchwise with the same block for
levels 2..L−1 and by the inner basis as a whole at level L (global context). Each level is an
orthonormal map of a subset of the coordinates, so the composition is again an orthonormal
**basis** (not a frame): M·N coefficients, Parseval and exact inversion hold, and the selector
divides the budget n between the levels (energy, gradients, learned scores) instead of a fixed
split. With block b and L levels, the local detail lives in blocks of b, b², …, b^(L−1) and the
global level in the (M/b^(L−1)) × (N/b^(L−1)) grid of block means.

Fast route: if the inner basis factorizes a block as B⁻¹(S) = L·K·R, the whole matrix is
blockdiag(L)·K'·blockdiag(R), where K' places each block's core entries at that block's offset:
the inner factorization, whatever it is, is reused for every block. In the hierarchy, level ℓ's
grid G_ℓ (itself factorized the same way, or by the inner basis at the last level) reaches W
through the block-mean directions of the levels above: a grid value at a block's (0, 0) slot adds
g·B⁻¹(E_00) = g·a bᵀ to that block, so W gets (I ⊗ a^⊗(ℓ−1)) G_ℓ (I ⊗ b^⊗(ℓ−1))ᵀ. The levels'
operators are stacked side by side (one core, one output block per level). This needs B⁻¹(E_00)
of rank one, which holds for every built-in basis (it is the DC direction); otherwise the
hierarchy takes the dense route.

Frequency map (when the inner basis has one): a position of level ℓ gets the inner basis's
frequency within its block or grid, divided by b^(ℓ−1) (with b = √(bm·bn)): a grid of block means
at level ℓ samples W every b^(ℓ−1) entries, so its frequencies are that much lower.
"""

from __future__ import annotations

import torch

from .. import operators
from ..factorization import Entries, Factorization, split_positions
from .base import SpectralBasis
from .registry import get_basis, register_basis


def _block_pair(block) -> tuple[int, int]:
    if isinstance(block, bool):
        raise ValueError(f"block must be an int or a pair [bm, bn] of ints >= 1, got {block!r}")
    if isinstance(block, int):
        block = (block, block)
    if (
        not isinstance(block, (tuple, list))
        or len(block) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in block)
    ):
        raise ValueError(f"block must be an int or a pair [bm, bn] of ints >= 1, got {block!r}")
    return int(block[0]), int(block[1])


def _to_blocks(x: torch.Tensor, bm: int, bn: int) -> torch.Tensor:
    """(..., M, N) -> (..., M/bm, N/bn, bm, bn)."""
    *lead, rows, cols = x.shape
    return x.reshape(*lead, rows // bm, bm, cols // bn, bn).transpose(-3, -2)


def _from_blocks(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_to_blocks`."""
    *lead, gm, gn, bm, bn = x.shape
    return x.transpose(-3, -2).reshape(*lead, gm * bm, gn * bn)


@register_basis("patchwise")
class PatchwiseBasis(SpectralBasis):
    """The inner basis per bm × bn block; with ``levels >= 2`` a global-to-local pyramid over block means.

    Args:
        inner: a registered basis name (not ``patchwise`` itself).
        block: block size, an int (square) or a pair ``[bm, bn]``; it must divide the matrix.
        levels: 1 for plain patchwise; L >= 2 for the hierarchical basis (see the module docstring).
        inner_options: keyword options of the inner basis, e.g. ``{"order": "natural"}`` for wht.
    """

    def __init__(self, inner: str = "dct", block=4, levels: int = 1, inner_options: dict | None = None):
        if inner == type(self).name:
            raise ValueError("the inner basis of patchwise cannot be patchwise itself; use levels for a hierarchy")
        self.inner_name = inner
        self.inner_options = dict(inner_options or {})
        self.inner = get_basis(inner, **self.inner_options)
        self.block = _block_pair(block)
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be an integer >= 1 (1: plain patchwise), got {levels!r}")
        self.levels = levels
        self.orthonormal = self.inner.orthonormal
        self.invertible = self.inner.invertible

    def options(self) -> dict:
        return {"inner": self.inner_name, "block": list(self.block), "levels": self.levels,
                "inner_options": dict(self.inner_options)}

    def grid_shapes(self, rows: int, cols: int) -> list[tuple[int, int]]:
        """Shape of the matrix each level transforms: [(M, N), (M/bm, N/bn), …] (one per level)."""
        bm, bn = self.block
        shapes = [(rows, cols)]
        for _ in range(self.levels - 1):
            rows, cols = rows // bm, cols // bn
            shapes.append((rows, cols))
        return shapes

    def check_shape(self, rows: int, cols: int) -> None:
        super().check_shape(rows, cols)
        bm, bn = self.block
        shapes = self.grid_shapes(rows, cols)
        patchwise_levels = shapes if self.levels == 1 else shapes[:-1]
        for level, (m, n) in enumerate(patchwise_levels, start=1):
            if m % bm or n % bn:
                where = "" if level == 1 else f" at level {level} (the grid of block means of level {level - 1})"
                raise ValueError(
                    f"patchwise block {bm}x{bn} does not divide the {m}x{n} matrix{where}"
                    f" (matrix {rows}x{cols}, levels={self.levels}); choose a block whose sides divide "
                    + ("both dimensions" if self.levels == 1 else f"them {self.levels - 1} times")
                )
        try:
            self.inner.check_shape(bm, bn)
            if self.levels > 1:
                self.inner.check_shape(*shapes[-1])
        except ValueError as err:
            raise ValueError(f"patchwise({self.inner_name}, block {bm}x{bn}, levels={self.levels}): {err}") from err

    def _patchwise(self, fn, x: torch.Tensor) -> torch.Tensor:
        return _from_blocks(fn(_to_blocks(x, *self.block)))

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self._forward_level(weight, 1)

    def _forward_level(self, x: torch.Tensor, level: int) -> torch.Tensor:
        if self.levels > 1 and level == self.levels:
            return self.inner.forward(x)
        out = self._patchwise(self.inner.forward, x)
        if level < self.levels:
            bm, bn = self.block
            grid = self._forward_level(out[..., ::bm, ::bn].clone(), level + 1)  # clone: out is written next
            out = out.clone()
            out[..., ::bm, ::bn] = grid
        return out

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        return self._inverse_level(coefficients, 1)

    def _inverse_level(self, c: torch.Tensor, level: int) -> torch.Tensor:
        if self.levels > 1 and level == self.levels:
            return self.inner.inverse(c)
        if level < self.levels:
            bm, bn = self.block
            grid = self._inverse_level(c[..., ::bm, ::bn].clone(), level + 1)
            c = c.clone()
            c[..., ::bm, ::bn] = grid
        return self._patchwise(self.inner.inverse, c)

    def factorization(self, rows, cols, positions):
        """blockdiag(L)·K'·blockdiag(R) per level, the levels stacked (see the module docstring)."""
        if self.levels == 1:
            return self._plain_factorization(rows, cols, positions)
        spread = self._block_mean_factors()
        if spread is None:
            return None
        bm, bn = self.block
        u, v = split_positions(positions, cols)
        level = torch.ones_like(u)  # 1-based level of each position: how often it sits on a block's (0, 0)
        for _ in range(self.levels - 1):
            level += ((u % bm**level == 0) & (v % bn**level == 0)).long()
        lefts, rights, parts, q_off, p_off = [], [], [], 0, 0
        for ell, (m, n) in enumerate(self.grid_shapes(rows, cols), start=1):
            index = torch.nonzero(level == ell).reshape(-1)
            if index.numel() == 0:
                continue
            local = (u[index] // bm ** (ell - 1)) * n + v[index] // bn ** (ell - 1)
            part = (self.inner.factorization(m, n, local) if ell == self.levels
                    else self._plain_factorization(m, n, local))
            if part is None:
                return None
            left, right = part.left, part.right
            if ell > 1:  # level ℓ reaches W through the block-mean directions of the ℓ − 1 levels above
                a, b = spread(ell - 1)
                left = operators.ComposedOp(operators.SpreadOp(a, m), left)
                right = operators.ComposedOp(right, operators.SpreadOp(b, n).T)
            e = part.entries
            parts.append(Entries(e.q + q_off, e.p + p_off, index[e.j], e.w))
            lefts.append(left.T)
            rights.append(right)
            q_off, p_off = q_off + left.size_in, p_off + right.size_out
        entries = Entries.concat(*parts)
        return Factorization(operators.StackedOp(lefts).T, operators.StackedOp(rights), entries, inverse=self.inverse)

    def _plain_factorization(self, rows, cols, positions):
        bm, bn = self.block
        u, v = split_positions(positions, cols)
        block_row, block_col = u // bm, v // bn
        inner = self.inner.factorization(bm, bn, (u % bm) * bn + v % bn)
        if inner is None:
            return None
        e = inner.entries
        entries = Entries(
            block_row[e.j] * inner.left.size_in + e.q, block_col[e.j] * inner.right.size_out + e.p, e.j, e.w
        )
        left = operators.block_diagonal(inner.left, rows // bm)
        right = operators.block_diagonal(inner.right, cols // bn)
        return Factorization(left, right, entries, inverse=None if inner.inverse is None else self.inverse)

    def _block_mean_factors(self):
        """``depth ↦ (a, b)`` with a·bᵀ the W-pattern of one grid value ``depth`` levels up, or None.

        A grid value g at a block's (0, 0) slot contributes g·B⁻¹(E_00) to that block; when
        B⁻¹(E_00) = a bᵀ is rank one (the DC direction of every built-in basis), a value ``depth``
        levels up spreads as g·(a⊗…⊗a)(b⊗…⊗b)ᵀ. Otherwise there is no separable fast route.
        """
        bm, bn = self.block
        unit = torch.zeros(bm, bn, dtype=torch.float64)
        unit[0, 0] = 1.0
        pattern = self.inner.inverse(unit)
        left, sigma, right_t = torch.linalg.svd(pattern)
        if sigma.numel() > 1 and float(sigma[1]) > 1e-12 * float(sigma[0]):
            return None
        a, b = left[:, 0] * sigma[0], right_t[0]

        def spread(depth):
            out_a, out_b = a, b
            for _ in range(depth - 1):
                out_a, out_b = torch.kron(out_a, a), torch.kron(out_b, b)
            return out_a, out_b

        return spread

    @property
    def has_frequency(self) -> bool:
        return self.inner.has_frequency

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        self.check_shape(rows, cols)
        bm, bn = self.block
        shrink = (bm * bn) ** 0.5
        out = None  # the map of the next coarser level, in units of that level's grid
        for level, (m, n) in reversed(list(enumerate(self.grid_shapes(rows, cols), start=1))):
            if self.levels > 1 and level == self.levels:
                here = self.inner.frequency(m, n)
            else:
                here = self.inner.frequency(bm, bn).repeat(m // bm, n // bn)
                if out is not None:
                    here[::bm, ::bn] = out / shrink
            out = here
        return out
