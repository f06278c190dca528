"""The compact route: the sparse route restricted to the basis functions its entries touch.

The sparse route transforms whole activations, x̂ = right(x) with all P columns, although its core
reads only the distinct columns p of its entries, and it spreads into all Q columns of ŷ and
synthesizes them although only the distinct q are written. Restricted to those functions, the two
transforms are the matrices

    R_kept = rows kept_p of Rmat  (d_p × N),    L_used = columns used_q of Lmat  (M × d_q),

and where the basis functions have compact support they are sparse: a level-j function of a
wavelet with an F-tap filter spans (F − 1)(2^j − 1) + 1 samples, a patchwise basis's one block, the
identity's one entry. Then x R_keptᵀ and ŷ L_usedᵀ (and their adjoints, for g and ĝx) are spreads
over the nonzeros (:func:`.core.spread`), O(tokens · nnz), with arrays only d_p and d_q wide:

    x̂_kept = x R_keptᵀ,   ŷ_used = α·x̂_kept K'(c)ᵀ,   y += ŷ_used L_usedᵀ
    ĝ_used = g L_used,     ∂L/∂c  = α·Σ_t ĝ_used[t, q'] x̂_kept[t, p'],   gx += ĝx_kept R_kept

with K' the core on the reduced indices (q' the position of q among used_q, p' of p among kept_p).
The nonzeros are read off the basis's own operators once, at the first choice of a route (Rmat's
rows are right.adjoint of unit vectors, Lmat's columns left.apply of them, in float64), so a basis
declares nothing for it. For bases whose functions span the whole axis (FFTs, Walsh–Hadamard) the
reading stops after the first block of functions, as soon as the nonzeros exceed what the full
transforms would cost (``limit``); the cost model then never picks this route.
"""

from __future__ import annotations

import torch

from ..operators import LinearOp
from .core import CoreProgram, spread, spread_cost

# Basis functions read off the operators this many at a time (a block × width float64 array).
ATOM_BLOCK = 128
# Values below this fraction of a block's largest magnitude are rounding noise of an exact zero.
ZERO_TOLERANCE = 1e-13


class SparseMatrixOp(LinearOp):
    """A = the sparse size_out × size_in matrix with A[rows_e, cols_e] = values_e; apply and adjoint
    are one spread each (x Aᵀ: out[:, rows_e] += values_e · x[:, cols_e]; z A: the reverse).

    Each direction keeps its entries sorted by destination, so that the compiled spread adds the
    runs of one destination in registers (3x faster than one entry at a time for wavelet functions).
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, size_out: int, size_in: int):
        self.size_out, self.size_in = size_out, size_in
        by_row = torch.argsort(rows * size_in + cols)
        by_col = torch.argsort(cols * size_out + rows)
        self._apply_entries = (cols[by_row], rows[by_row], values[by_row])  # (src, dst, scale)
        self._adjoint_entries = (rows[by_col], cols[by_col], values[by_col])

    @property
    def nnz(self) -> int:
        return self._apply_entries[2].numel()

    def cost(self, rows, native=False):
        return spread_cost(rows, self.nnz, self.size_in + self.size_out, native)

    def apply(self, x):
        src, dst, scale = self._apply_entries
        return spread(x.reshape(-1, self.size_in), src, dst, self.size_out, scale).reshape(*x.shape[:-1], self.size_out)

    def adjoint(self, z):
        src, dst, scale = self._adjoint_entries
        return spread(z.reshape(-1, self.size_out), src, dst, self.size_in, scale).reshape(*z.shape[:-1], self.size_in)


def _nonzeros(vectors_of, indices: torch.Tensor, limit: float | None):
    """(function, position, value) of the nonzeros of the vectors ``vectors_of(indices[block])``
    (each a len(block) × width float64 array), or None once there are more than ``limit``."""
    parts, total = [], 0
    for start in range(0, indices.numel(), ATOM_BLOCK):
        block = indices[start : start + ATOM_BLOCK]
        dense = vectors_of(block)
        magnitude = dense.abs()
        function, position = (magnitude > ZERO_TOLERANCE * float(magnitude.max().clamp_min(1e-300))).nonzero(
            as_tuple=True)
        total += function.numel()
        if limit is not None and total > limit:
            return None
        parts.append((function + start, position, dense[function, position]))
    if not parts:  # no entries at all
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64)
    return tuple(torch.cat(column) for column in zip(*parts))


def _unit_rows(indices: torch.Tensor, width: int) -> torch.Tensor:
    unit = torch.zeros(indices.numel(), width, dtype=torch.float64)
    unit[torch.arange(indices.numel()), indices] = 1.0
    return unit


class CompactProgram:
    """The compact route's operators and core for one plan (see the module docstring).

    It has the attributes the sparse route's Function reads from a plan (``left``, ``right``,
    ``core``, ``token_chunks``), so :class:`.functions.SparseLinear` runs it unchanged.
    """

    def __init__(self, left: SparseMatrixOp, right: SparseMatrixOp, core: CoreProgram, token_chunks):
        self.left, self.right, self.core = left, right, core
        self._token_chunks = token_chunks

    @property
    def nnz(self) -> int:
        """Nonzeros of R_kept and L_used together."""
        return self.left.nnz + self.right.nnz

    def token_chunks(self, tokens: int, budget: int | None = None):
        width = max(self.left.size_out, self.right.size_in, self.left.size_in, self.right.size_out)
        return self._token_chunks(tokens, budget, width)

    @classmethod
    def build(cls, plan, limit: float | None = None) -> "CompactProgram | None":
        """The compact program of ``plan`` (an :class:`.plan.AdapterPlan`), or None if R_kept and
        L_used have more than ``limit`` nonzeros together (None: no limit)."""
        core = plan.core
        kept_p, p_local = core.kept_columns.cpu(), core.kept_p.cpu()
        used_q, q_local = torch.unique(core.q.cpu(), return_inverse=True)
        right = _nonzeros(lambda idx: plan.right.adjoint(_unit_rows(idx, plan.core_cols)), kept_p, limit)
        if right is None:
            return None
        rest = None if limit is None else limit - right[0].numel()
        left = _nonzeros(lambda idx: plan.left.apply(_unit_rows(idx, plan.core_rows)), used_q, rest)
        if left is None:
            return None
        device, dtype = plan.device, plan.dtype

        def on_device(function, position, value):
            return function.to(device), position.to(device), value.to(device=device, dtype=dtype)

        r_function, r_position, r_value = on_device(*right)
        l_function, l_position, l_value = on_device(*left)
        right_op = SparseMatrixOp(r_function, r_position, r_value, kept_p.numel(), plan.cols)  # R_kept
        left_op = SparseMatrixOp(l_position, l_function, l_value, plan.rows, used_q.numel())  # L_used
        # its x̂ is only the kept columns: backward recomputes them (one spread) rather than saving
        # tokens × d_p floats per layer, which LoRA's step does not hold (MiniLM at 2,048 tokens:
        # 1.04x LoRA's step memory with them saved, on 13 patchwise layers)
        reduced = CoreProgram(q_local.to(device), p_local.to(device), core.j, core.w, core.n,
                              used_q.numel(), kept_p.numel(), may_keep=False)
        return cls(left_op, right_op, reduced, plan.chunks_of_width)
