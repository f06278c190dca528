"""The structure a basis declares for the fast routes: B⁻¹(S) = Lmat · K(c) · Rmat.

For a basis B, an ``M × N`` shape and the adapter's flat ``positions``, a :class:`Factorization`
states

    B⁻¹(S) = Lmat · K · Rmat,     K[q_e, p_e] += w_e · c[j_e]   (summed over the entries e)

with ``Lmat`` the ``M × Q`` matrix of the operator ``left`` and ``Rmat`` the ``P × N`` matrix of
``right`` (1-D operators from :mod:`spectral_peft.operators`), S the M × N matrix holding
coefficient c_j at ``positions[j]``. A separable basis, B⁻¹(E_uv) = l_u r_vᵀ, has one entry per
coefficient (:func:`separable`); a sum of separable terms (the standard 2-D DHT, the real DFT
layout) has one entry per term. The fast routes (:mod:`spectral_peft.fastpath`) then compute, for
activations x (tokens × N) and output gradients g (tokens × M),

    x ΔWᵀ      = α · left.apply( scatter_q( gather_p(right.apply(x)) · w·c ) )
    g ΔW       = α · right.adjoint( scatter_p( gather_q(left.adjoint(g)) · w·c ) )
    ∂L/∂c_j    = α · Σ_{e: j_e = j} w_e Σ_t left.adjoint(g)[t, q_e] · right.apply(x)[t, p_e]

at O(tokens · (M log M + N log N + E)) instead of O(tokens · M · N). A basis returns one from
:meth:`spectral_peft.bases.SpectralBasis.factorization`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .native import transpose as native_transpose
from .operators import CoefficientOp, LinearOp


@dataclasses.dataclass
class Entries:
    """The nonzeros of the core K: K[q_e, p_e] += w_e · c[j_e]. Index tensors are int64, w float64."""

    q: torch.Tensor
    p: torch.Tensor
    j: torch.Tensor
    w: torch.Tensor

    def __post_init__(self):
        self.q = torch.as_tensor(self.q, dtype=torch.long).reshape(-1)
        self.p = torch.as_tensor(self.p, dtype=torch.long).reshape(-1)
        self.j = torch.as_tensor(self.j, dtype=torch.long).reshape(-1)
        self.w = torch.as_tensor(self.w, dtype=torch.float64).reshape(-1)
        if not (self.q.numel() == self.p.numel() == self.j.numel() == self.w.numel()):
            raise ValueError("entries q, p, j and w must have the same length")

    def __len__(self) -> int:
        return self.q.numel()

    @classmethod
    def concat(cls, *parts: "Entries") -> "Entries":
        """All entries of ``parts``; entries with weight 0 (a vanishing term) are dropped."""
        e = cls(*(torch.cat([getattr(part, f) for part in parts]) for f in ("q", "p", "j", "w")))
        keep = e.w != 0
        return cls(e.q[keep], e.p[keep], e.j[keep], e.w[keep])


@dataclasses.dataclass
class Factorization:
    """ΔW/α = left · K · right (see the module docstring)."""

    left: LinearOp  # size_out = M (rows of W), size_in = Q
    right: LinearOp  # size_in = N (cols of W), size_out = P
    entries: Entries
    #: optional B⁻¹ of the dense M × N coefficient matrix S (equal to ``basis.inverse``), used to
    #: rebuild ΔW when it is faster than :meth:`dense`, the default (e.g. the wavelet pyramid, or a
    #: plain scatter for the identity). Its argument is a buffer the caller built for it, which it
    #: may overwrite; it returns a new tensor or its argument, never a view of state it keeps (the
    #: training routes add W0 into the result in place).
    inverse: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self):
        e = self.entries
        if len(e) and (int(e.q.max()) >= self.left.size_in or int(e.p.max()) >= self.right.size_out):
            raise ValueError(
                f"entries index outside the operators: Q={self.left.size_in}, P={self.right.size_out}, "
                f"max q={int(e.q.max())}, max p={int(e.p.max())}"
            )

    @property
    def rows(self) -> int:
        return self.left.size_out

    @property
    def cols(self) -> int:
        return self.right.size_in

    def dense(self, coefficients: torch.Tensor) -> torch.Tensor:
        """B⁻¹(S) = left · K(c) · right as a dense M × N matrix, for the n ``coefficients`` c."""
        e = self.entries
        j = e.j.to(coefficients.device)
        return self.dense_from_values(e.w.to(device=coefficients.device, dtype=coefficients.dtype) * coefficients[j])

    def dense_from_values(self, values: torch.Tensor) -> torch.Tensor:
        """left · K · right as a dense M × N matrix, K[q_e, p_e] += ``values``_e (one value per entry).

        Kᵀ is scattered densely (P × Q), ``left.apply`` runs along its rows ((Lmat·K)ᵀ, P × M), one
        transpose (skipped by an operator that writes Lmat·K directly, ``apply_transposed``), and
        ``right.adjoint`` along the rows of Lmat·K (M × N); every intermediate is freed as soon as
        it is used (this runs in backward, at peak memory).
        """
        e = self.entries
        core_t = values.new_zeros(self.right.size_out, self.left.size_in)
        core_t.index_put_((e.p.to(values.device), e.q.to(values.device)), values, accumulate=True)
        rows = self.left.apply_transposed(core_t)  # Lmat · K, (M, P), where left writes it directly
        if rows is None:
            left_done = self.left.apply(core_t)  # (Lmat · K)ᵀ, (P, M)
            del core_t
            rows = native_transpose.transposed(left_done)
            if rows is None:
                rows = left_done.T.contiguous()
            del left_done
        else:
            del core_t
        return self.right.adjoint(rows)


def split_positions(positions: torch.Tensor, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row u, column v) of flat row-major ``positions`` into an ``… × cols`` matrix, on the CPU."""
    positions = torch.as_tensor(positions).reshape(-1).cpu()
    return torch.div(positions, cols, rounding_mode="floor"), positions % cols


def separable(row_op: CoefficientOp, col_op: CoefficientOp, positions: torch.Tensor) -> Factorization:
    """The factorization of a separable basis C = A_M W A_Nᵀ with orthonormal 1-D transforms.

    ``row_op`` computes the transform along the M rows, ``col_op`` along the N columns; their
    ``slot`` says where coefficient k sits. Then B⁻¹(E_uv) = A_M[u]ᵀ A_N[v]: left = row_opᵀ,
    right = col_op, one entry (slot_M(u), slot_N(v), sign·sign) per coefficient.
    """
    u, v = split_positions(positions, col_op.size_in)
    q, sign_q = row_op.slot(u)
    p, sign_p = col_op.slot(v)
    return Factorization(row_op.T, col_op, Entries(q, p, torch.arange(u.numel()), sign_q * sign_p))
