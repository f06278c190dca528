"""The sparse core K(c) of a factorization, applied to token-major activations (tokens × features).

Three products, all O(tokens × entries):

    forward   ŷ[:, q_e] += α w_e c_{j_e} · x̂[:, p_e]          (gather, scale, scatter)
    backward  ĝx[:, p_e] += α w_e c_{j_e} · ĝ[:, q_e]          (the same with q and p swapped)
    gradient  ∂L/∂c_j   = α Σ_{e: j_e = j} w_e Σ_t ĝ[t, q_e] x̂[t, p_e]   (sampled product)

They are memory-bound: the loops run over the tokens in chunks, so that the gathered
(chunk × entries) intermediates stay in the CPU's L2 cache instead of streaming tokens × entries
floats through memory. (Measured on torch 2.13 CPU: ``index_select`` along the last dimension is
the fastest gather for float32 — about 5x faster than for 8-byte types, so reading a bin's real and
imaginary parts as one float64 does not pay — and ``index_add_`` the fastest scatter.) On float32
CPU arrays both run in compiled kernels instead: the spread (forward and backward) in
:mod:`spectral_peft.native.spread`, the sampled product in :mod:`spectral_peft.native.sampled`.
Elsewhere (a GPU, float64, no C compiler) the spread gathers and scatters with those torch ops, and
the sampled product gathers, or for narrow arrays transposes ĝ and x̂ to feature-major and calls
the sampled dense-dense kernel ``torch.sparse.sampled_addmm``.
"""

from __future__ import annotations

import warnings

import torch

from ..native import sampled as native_sampled
from ..native import spread as native_spread
from ..operators import OP_OVERHEAD

# Gathered chunks of about CHUNK_ELEMENTS floats (≈ 2 MiB in float32: L2 and a slice of L3).
CHUNK_ELEMENTS = 1 << 19
# Token chunks of the routes, all of equal size, of transformed activations of at most
# TOKEN_CHUNK_ELEMENTS floats (2 MiB in float32) in the sparse route, whose chunks add to the step's
# peak memory, and GRADIENT_CHUNK_ELEMENTS (6 MiB) in the merged route's coefficient gradient, which
# runs while the backward holds little else. Larger chunks cost fewer calls (2,048 tokens of a
# 1,024-wide layer: 2 chunks of 1,024, 4.3 ms for the coefficient gradient against 5.3 ms in
# 511-token chunks plus a 4-token tail); one 16 MiB chunk took 5x as long (fresh pages on every
# call), and 8 MiB chunks of the wavelet's 2,032-wide arrays raised the 1,024² stack's step memory
# to 1.004x LoRA (0.98x at 6 MiB).
TOKEN_CHUNK_ELEMENTS = 1 << 19
GRADIENT_CHUNK_ELEMENTS = 3 << 19

# Rough costs of the core's products in seconds (2-core x86 CPU), for the cost model of .plan:
SAMPLED_NS = 1.15e-9  # per token and entry of the sampled product with torch kernels (two gathers, multiply, sum)
NATIVE_SAMPLED_NS = 0.09e-9  # ... with the compiled kernel (spectral_peft.native.sampled), per token and entry
NATIVE_TRANSPOSE_NS = 0.2e-9  # ... plus its in-cache transposes, per token and feature of ĝ and x̂
SPREAD_NS = 2.0e-9  # per token and entry of a gather-scale-scatter with torch kernels
NATIVE_SPREAD_NS = 0.09e-9  # ... with the compiled kernel (spectral_peft.native.spread), plus its in-cache transposes


def spread_cost(tokens: int, entries: int, widths: int, native: bool) -> float:
    """Estimated seconds of one :func:`spread` of ``entries`` over ``tokens`` rows whose input and
    output widths add up to ``widths`` (the compiled kernel transposes both in cache)."""
    calls = 1 + tokens * entries // (1 << 18)
    if native:
        return tokens * (entries * NATIVE_SPREAD_NS + widths * NATIVE_TRANSPOSE_NS) + 2 * calls * OP_OVERHEAD
    return tokens * entries * SPREAD_NS + 4 * calls * OP_OVERHEAD


def _chunk_rows(tokens: int, width: int) -> int:
    return max(16, min(tokens, CHUNK_ELEMENTS // max(width, 1)))


def _chunks(tokens: int, width: int):
    step = _chunk_rows(tokens, width)
    for start in range(0, tokens, step):
        yield slice(start, min(start + step, tokens))


def spread(h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, size: int, scale: torch.Tensor) -> torch.Tensor:
    """out (T × size) with out[:, dst_e] += scale_e · h[:, src_e] for every entry e."""
    fast = native_spread.spread(h, src, dst, size, scale)
    if fast is not None:
        return fast
    out = h.new_zeros(h.shape[0], size)
    _spread_into(out, h, src, dst, scale)
    return out


def _spread_into(out, h, src, dst, scale):
    for rows in _chunks(h.shape[0], src.numel()):
        vals = h[rows].index_select(1, src)
        vals.mul_(scale)
        out[rows].index_add_(1, dst, vals)


def sampled(a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
    """(E,) with entry e = Σ_t a[t, ia_e] · b[t, ib_e]."""
    fast = native_sampled.sampled_product(a, b, ia, ib)
    if fast is not None:
        return fast
    out = a.new_zeros(ia.numel())
    for rows in _chunks(a.shape[0], ia.numel()):
        prod = a[rows].index_select(1, ia)
        prod.mul_(b[rows].index_select(1, ib))
        out.add_(prod.sum(0))
    return out


class CoreProgram:
    """The entries (q, p, j, w) of a core on the adapter's device; ``n`` coefficients, Q × P core."""

    def __init__(self, q, p, j, w, n: int, rows: int, cols: int, may_keep: bool = True):
        self.n, self.rows, self.cols = n, rows, cols  # rows = Q (ĝ / ŷ width), cols = P (x̂ width)
        self.may_keep = may_keep
        self.q, self.p, self.j, self.w = q, p, j, w
        self.direct = q.numel() == n and bool(torch.equal(j.cpu(), torch.arange(n)))
        # the distinct columns of x̂ the entries read, and each entry's column among them
        self.kept_columns, self.kept_p = torch.unique(p, return_inverse=True)

    @property
    def keeps_columns(self) -> bool:
        """Whether the sparse route keeps x̂[:, kept_columns] from its forward pass for the gradient:
        when the entries read at most half of x̂'s columns (the kept array then costs at most half
        the input's floats; it saves transforming x again in backward), unless built with
        ``may_keep=False``. 1,000 coefficients of a 4,096² layer read 880–1,590 of its 4,098
        columns, depending on the basis."""
        return self.may_keep and 2 * self.kept_columns.numel() <= self.cols

    @property
    def entries(self) -> int:
        return self.q.numel()

    def scale(self, c: torch.Tensor, alpha: float) -> torch.Tensor:
        """α · w_e · c[j_e] per entry."""
        c = c if self.direct else c.index_select(0, self.j)
        return c * (self.w * alpha)

    def forward(self, xh: torch.Tensor, c: torch.Tensor, alpha: float) -> torch.Tensor:
        """ŷ = α·x̂ K(c)ᵀ (T × Q)."""
        return spread(xh, self.p, self.q, self.rows, self.scale(c, alpha))

    def forward_from_kept(self, kept: torch.Tensor, c: torch.Tensor, alpha: float) -> torch.Tensor:
        """:meth:`forward` from the kept columns x̂[:, kept_columns] (T × distinct p)."""
        return spread(kept, self.kept_p, self.q, self.rows, self.scale(c, alpha))

    def backward(self, gh: torch.Tensor, c: torch.Tensor, alpha: float) -> torch.Tensor:
        """ĝx = α·ĝ K(c) (T × P)."""
        return spread(gh, self.q, self.p, self.cols, self.scale(c, alpha))

    def grad(self, gh: torch.Tensor, xh: torch.Tensor, alpha: float) -> torch.Tensor:
        """∂L/∂c (n,) from ĝ (T × Q) and x̂ (T × P)."""
        if self._use_sddmm(gh.shape[1], xh.shape[1]) and not native_sampled.supports(gh, xh):
            per_entry = self._sddmm(gh, xh)
        else:
            per_entry = sampled(gh, xh, self.q, self.p)
        return self._per_coefficient(per_entry, alpha)

    def grad_from_kept(self, gh: torch.Tensor, kept: torch.Tensor, alpha: float) -> torch.Tensor:
        """:meth:`grad` from ĝ and the kept columns x̂[:, kept_columns] (T × distinct p)."""
        return self._per_coefficient(sampled(gh, kept, self.q, self.kept_p), alpha)

    def _per_coefficient(self, per_entry: torch.Tensor, alpha: float) -> torch.Tensor:
        per_entry.mul_(self.w * alpha)
        return per_entry if self.direct else per_entry.new_zeros(self.n).index_add_(0, self.j, per_entry)

    def _use_sddmm(self, q_width: int, p_width: int) -> bool:
        # The sampled dense-dense product kernel needs feature-major copies of ĝ and x̂ (two
        # transposes, O(T·(Q+P))) but then reads contiguous rows, against two gathers of O(T·E):
        # it wins when the arrays are narrow relative to the number of entries.
        return q_width + p_width <= 1.5 * self.entries

    def _sddmm(self, gh: torch.Tensor, xh: torch.Tensor) -> torch.Tensor:
        csr, inverse = self._csr(gh.shape[1], xh.shape[1], gh.dtype)
        a = gh.T.contiguous()  # Q × T (the callers pass token chunks)
        b = xh.T.contiguous()  # P × T, used as its T × P transpose (column-major)
        return torch.sparse.sampled_addmm(csr, a, b.T, beta=0.0).values()[inverse]

    def _csr(self, q_width: int, p_width: int, dtype):
        key = (q_width, p_width, dtype)
        cache = self.__dict__.setdefault("_csr_cache", {})
        if key not in cache:
            flat = self.q * p_width + self.p
            unique, inverse = torch.unique(flat, return_inverse=True)  # sorted: CSR order
            rows = torch.div(unique, p_width, rounding_mode="floor")
            crow = torch.zeros(q_width + 1, dtype=torch.long, device=self.q.device)
            crow[1:] = torch.cumsum(torch.bincount(rows, minlength=q_width), 0)
            values = torch.zeros(unique.numel(), dtype=dtype, device=self.q.device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                csr = torch.sparse_csr_tensor(crow, unique % p_width, values, (q_width, p_width), check_invariants=False)
            cache[key] = (csr, inverse)
        return cache[key]

    def grad_blocks(self, gh: list, xh: list, alpha: float):
        """:meth:`grad` with ĝ and x̂ each given as a list of consecutive column pieces."""
        if len(gh) == 1 and len(xh) == 1:
            return self.grad(gh[0], xh[0], alpha)
        groups = self._groups(tuple(b.shape[1] for b in gh), tuple(b.shape[1] for b in xh))
        out = gh[0].new_zeros(self.n)
        for (bq, bp), (q, p, j, w) in groups.items():
            out.index_add_(0, j, sampled(gh[bq], xh[bp], q, p).mul_(w * alpha))
        return out

    def _groups(self, q_blocks, p_blocks):
        cache = self.__dict__.setdefault("_group_cache", {})
        key = (q_blocks, p_blocks)
        if key not in cache:
            q_off = torch.tensor([0, *q_blocks], device=self.q.device).cumsum(0)
            p_off = torch.tensor([0, *p_blocks], device=self.p.device).cumsum(0)
            bq = torch.bucketize(self.q, q_off[1:], right=True)
            bp = torch.bucketize(self.p, p_off[1:], right=True)
            groups = {}
            for a, b in sorted(set(zip(bq.tolist(), bp.tolist()))):
                m = (bq == a) & (bp == b)
                groups[(a, b)] = (self.q[m] - q_off[a], self.p[m] - p_off[b], self.j[m], self.w[m])
            cache[key] = groups
        return cache[key]
