"""The structure a basis gives the fast routes: ΔW = L · K(c) · R with 1-D operators L and R.

For a basis B, an ``M × N`` shape and the adapter's flat ``positions``, a :class:`Factorization`
states

    B⁻¹(S) = Lmat · K · Rmat,     K[q_e, p_e] += w_e · c[j_e]   (summed over the entries e)

with ``Lmat`` the ``M × Q`` matrix of the operator ``left`` and ``Rmat`` the ``P × N`` matrix of
``right`` (see :mod:`.operators`). A separable basis, B⁻¹(E_uv) = l_u r_vᵀ, has one entry per
coefficient (q = u, p = v, w = 1); the standard 2-D DHT and the real DFT layout are sums of two
separable terms (cas(a+b) = cas(a)cos(b) + cas(−a)sin(b), cos(a+b) = cos a cos b − sin a sin b)
and have two. Then, for activations x (tokens × N) and output gradients g (tokens × M):

    x ΔWᵀ      = α · left.apply( scatter_q( gather_p(right.apply(x)) · w·c ) )
    g ΔW       = α · right.adjoint( scatter_p( gather_q(left.adjoint(g)) · w·c ) )
    ∂L/∂c_j    = α · Σ_{e: j_e = j} w_e Σ_t left.adjoint(g)[t, q_e] · right.apply(x)[t, p_e]

which cost O(tokens · (M log M + N log N + E)) instead of O(tokens · M · N).

How a basis provides one (no edit outside the basis's own file is needed):

* define ``sparse_factorization(self, rows, cols, positions)`` on the basis class, returning a
  :class:`Factorization` (or None to use the dense route for that shape); or
* register a function for the basis class from elsewhere with :func:`register_factorization`
  (the built-in bases are registered this way in :mod:`.builtin`, keyed by exact class).

A basis with neither is served by the dense route, which needs nothing but ``basis.inverse``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .operators import LinearOp


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
        return cls(*(torch.cat([getattr(e, f) for e in parts]) for f in ("q", "p", "j", "w")))

    def drop_zeros(self) -> "Entries":
        keep = self.w != 0
        return Entries(self.q[keep], self.p[keep], self.j[keep], self.w[keep])


@dataclasses.dataclass
class Factorization:
    """ΔW/α = left · K · right (see the module docstring)."""

    left: LinearOp  # size_out = M (rows of W), size_in = Q
    right: LinearOp  # size_in = N (cols of W), size_out = P
    entries: Entries
    #: optional B⁻¹ for this shape from the dense 2-D coefficient matrix S (same result as
    #: ``basis.inverse`` to float tolerance), used to rebuild ΔW when it is faster than
    #: :func:`dense_from_core`, the default (e.g. the wavelet pyramid, or a plain scatter for
    #: identity). It may overwrite and return S: callers pass a fresh tensor.
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
        """left · K(c) · right as a dense M × N matrix, through the 1-D operators.

        See :func:`dense_from_core`.
        """
        e = self.entries
        return dense_from_core(self.left, self.right, e.q, e.p, e.w.to(coefficients.dtype) * coefficients[e.j])


def dense_from_core(left: LinearOp, right: LinearOp, q, p, values) -> torch.Tensor:
    """Lmat · K · Rmat (M × N, contiguous) with K[q_e, p_e] += values_e.

    Kᵀ is scattered densely (P × Q), ``left.apply`` runs along its rows ((Lmat·K)ᵀ, P × M), one
    transpose, and ``right.adjoint`` along the rows of Lmat·K (M × N): a single transpose, and
    every intermediate freed as soon as it is used (this runs in backward, at peak memory).
    """
    core_t = values.new_zeros(right.size_out, left.size_in)
    core_t.index_put_((p, q), values, accumulate=True)
    left_done = left.apply(core_t)  # (Lmat · K)ᵀ, (P, M)
    del core_t
    rows = left_done.T.contiguous()  # Lmat · K, (M, P)
    del left_done
    return right.adjoint(rows)


def separable(left: LinearOp, right: LinearOp, positions: torch.Tensor, weight: float = 1.0) -> Factorization:
    """The factorization of a separable basis, B⁻¹(E_uv) = weight · (column u of Lmat)(row v of Rmat)."""
    positions = positions.reshape(-1).cpu()
    cols = right.size_in
    rows, cols_ = torch.div(positions, cols, rounding_mode="floor"), positions % cols
    n = positions.numel()
    return Factorization(left, right, Entries(rows, cols_, torch.arange(n), torch.full((n,), float(weight))))


# ------------------------------------------------------------------------------------------------
# Registry: basis class -> function(basis, rows, cols, positions) -> Factorization | None
# ------------------------------------------------------------------------------------------------
_FACTORIZERS: dict[type, Callable] = {}
_BUILTINS_LOADED = False


def register_factorization(basis_cls: type):
    """Decorator: ``fn(basis, rows, cols, positions)`` builds the factorization of ``basis_cls``.

    Keyed by the exact class (a subclass that overrides the transform must not inherit a fast
    path that no longer matches it); a subclass registers its own or defines
    ``sparse_factorization``.
    """

    def decorator(fn):
        _FACTORIZERS[basis_cls] = fn
        return fn

    return decorator


def factorization_for(basis, rows: int, cols: int, positions: torch.Tensor) -> Factorization | None:
    """The basis's :class:`Factorization` for an ``rows × cols`` adapter, or None (dense route only)."""
    global _BUILTINS_LOADED
    hook = getattr(basis, "sparse_factorization", None)
    if callable(hook):
        return hook(rows, cols, positions)
    if not _BUILTINS_LOADED:
        from . import builtin  # noqa: F401  (registers the built-in bases)

        _BUILTINS_LOADED = True
    fn = _FACTORIZERS.get(type(basis))
    return None if fn is None else fn(basis, rows, cols, positions)
