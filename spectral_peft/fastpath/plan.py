"""Per-adapter plan: the factorization on the right device/dtype, and the choice of route by shape.

Routes (``SpectralAdapter.route``):

* ``"auto"``       one matmul with a cached W0 + ΔW when no coefficient gradient is needed (no_grad
                   inference, or frozen coefficients; ``last_route == "cached"``); otherwise the
                   cheapest of dense / merged / sparse / compact by the cost model below. Inputs the
                   fast routes do not handle (a non-Linear base, activations on another device) take
                   ``"reference"``. Under ``torch.compile`` it takes ``"traced"``: the sparse product
                   written with plain differentiable torch ops (:func:`.functions.sparse_delta_output`),
                   so the compiler sees the whole step (``"reference"`` for a basis without factorization).
* ``"reference"``  y = base(x) + x ΔWᵀ through plain autograd (the definition; what peft's FourierFT does).
* ``"dense"``      :class:`.functions.DenseLinear` (any basis).
* ``"merged"``     :class:`.functions.MergedLinear` (bases with a factorization).
* ``"sparse"``     :class:`.functions.SparseLinear` (bases with a factorization).
* ``"compact"``    :class:`.functions.SparseLinear` with the transforms restricted to the basis
                   functions the entries touch, as sparse matrices (:mod:`.compact`); chosen where
                   those functions have compact support (wavelets, patchwise blocks).

The cost model counts, per training step and beyond the frozen layer's own two matmuls (forward
x W0ᵀ and backward g W0), the extra work of each route in estimated seconds: matmul FMAs, FFT-like
transforms of activations (tokens × features) and of the M × N update, and gathered entries.
Constants are rough (measured on a 2-core x86 CPU); only their ratios matter, and the routes are
exact, so a wrong guess costs time, never accuracy.
"""

from __future__ import annotations

import math

import torch

import dataclasses

from ..factorization import Entries, Factorization
from .. import native
from ..operators import FFT_NS, OP_OVERHEAD, PASS_NS
from . import core as _core
from .compact import CompactProgram
from .core import NATIVE_SAMPLED_NS, NATIVE_SPREAD_NS, NATIVE_TRANSPOSE_NS, SAMPLED_NS, SPREAD_NS
from .core import CoreProgram, spread_cost
from .shared import SHARED

ROUTES = ("auto", "reference", "dense", "merged", "sparse", "compact", "traced")

MATMUL_NS = 0.023e-9  # per multiply-add of a large float32 matmul (one x86 core)
# A token chunk may exceed its budget by 5%: an FFT basis's arrays are n + 2 wide, and a strict
# budget made 512 tokens of a 4,096-wide layer 5 chunks of 103 instead of 4 of 128.
BUDGET_SLACK = 1.05
# The sparse route takes longer than the sum of its parts (zero-filled T-row buffers, strided adds):
# measured about 1.7x with torch's spread; with the compiled one, 1.3x puts the estimated crossover
# to the merged route at 540-1,470 tokens against 1,100-1,400 measured (384² to 1,024² layers,
# 1,000 coefficients, 2 threads), where the two routes differ by a few percent.
SPARSE_OVERHEAD = 1.7
NATIVE_SPARSE_OVERHEAD = 1.3


class AdapterPlan:
    """The factorization of one adapter, with its entries and operator constants on ``device`` in ``dtype``.

    Built once per adapter (at injection, and again after a move to another device or precision),
    never inside the forward pass.
    """

    def __init__(self, factorization: Factorization, n: int, device, dtype):
        e = factorization.entries
        self.q, self.p, self.j = e.q.to(device), e.p.to(device), e.j.to(device)
        self.w = e.w.to(device=device, dtype=dtype)
        self.factorization = f = dataclasses.replace(factorization, entries=Entries(self.q, self.p, self.j, e.w))
        self.left, self.right = f.left, f.right
        self.left.prepare(device, dtype)
        self.right.prepare(device, dtype)
        self.rows, self.cols = f.rows, f.cols
        self.core_rows, self.core_cols = f.left.size_in, f.right.size_out  # Q, P
        self.n = n
        self.device, self.dtype = torch.device(device), dtype
        self.core = CoreProgram(self.q, self.p, self.j, self.w, n, self.core_rows, self.core_cols)
        self.entries = len(e)

    def delta(self, coefficients: torch.Tensor, alpha: float, positions: torch.Tensor) -> torch.Tensor:
        """ΔW = α·B⁻¹(S) (M × N), by the factorization's own builder or its 1-D operators."""
        if self.factorization.inverse is not None:
            dense = coefficients.new_zeros(self.rows * self.cols)
            dense.index_put_((positions,), coefficients * alpha)
            return self.factorization.inverse(dense.view(self.rows, self.cols))
        return self.factorization.dense_from_values(self.entry_scale(coefficients, alpha))

    def entry_scale(self, coefficients: torch.Tensor, alpha: float) -> torch.Tensor:
        """α · w_e · c[j_e] per entry."""
        return self.core.scale(coefficients, alpha)

    def token_chunks(self, tokens: int, budget: int | None = None):
        """Slices of the token dimension: the routes transform, gather and scatter one chunk at a
        time, so that x̂, ĝ and the gathered entries never exist at full size. As few chunks as keep
        each within ``budget`` floats (default ``core.TOKEN_CHUNK_ELEMENTS``) give or take
        ``BUDGET_SLACK``, of equal size (no short tail), at least 32 tokens."""
        width = max(self.core_rows, self.core_cols, self.rows, self.cols)
        return self.chunks_of_width(tokens, budget, width)

    @staticmethod
    def chunks_of_width(tokens: int, budget: int | None, width: int):
        """:meth:`token_chunks` for arrays at most ``width`` wide."""
        budget = _core.TOKEN_CHUNK_ELEMENTS if budget is None else budget
        count = max(1, math.ceil(tokens * width / (BUDGET_SLACK * budget)))
        step = max(32, -(-tokens // count))
        for start in range(0, tokens, step):
            yield slice(start, min(start + step, tokens))

    def compact(self, limit: float | None = None) -> CompactProgram | None:
        """The compact route's program (:mod:`.compact`), built once; None if its two sparse
        transforms have more than ``limit`` nonzeros (None: any number, as when the route is forced)."""
        memo = self.__dict__.setdefault("_compact", {})
        if "program" in memo:
            return memo["program"]
        if limit is not None and memo.get("denser_than", -1.0) >= limit:
            return None
        program = CompactProgram.build(self, limit)
        if program is None:
            memo["denser_than"] = max(limit, memo.get("denser_than", -1.0))
        else:
            memo["program"] = program
        return program

    def coefficient_grad(self, g2: torch.Tensor, x2: torch.Tensor, alpha: float, source=None) -> torch.Tensor:
        """∂L/∂c from output gradients g2 (T × M) and inputs x2 (T × N), chunk by chunk, in the plan's dtype.

        ``source``: the input tensor x2 was flattened from, when a forward pass registered it with
        :data:`.shared.SHARED` (its transform is then shared with the other adapters reading it).
        """
        out = g2.new_zeros(self.n, dtype=self.dtype)
        for chunk in self.token_chunks(g2.shape[0], _core.GRADIENT_CHUNK_ELEMENTS):
            g, x = g2[chunk].to(self.dtype), x2[chunk].to(self.dtype)
            xh = self.right.apply_blocks(x) if source is None else SHARED.apply_blocks(source, self.right, chunk, x)
            out.add_(self.core.grad_blocks(self.left.adjoint_blocks(g), xh, alpha))
            del xh
        if source is not None:
            SHARED.done(source)
        return out

    # ---------------------------------------------------------------- cost model
    def choose(self, tokens: int, grad_input: bool) -> str:
        """:func:`choose_route` for this adapter, memoized per (tokens, grad_input)."""
        memo = self.__dict__.setdefault("_choices", {})
        key = (tokens, grad_input)
        if key not in memo:
            memo[key] = choose_route(tokens, self.rows, self.cols, grad_input, self)
        return memo[key]


def delta_cost(rows: int, cols: int, plan: AdapterPlan | None) -> float:
    """Estimated seconds to rebuild ΔW (a 2-D transform of rows × cols) and add it to W0."""
    size = rows * cols
    if plan is None:  # a generic FFT-like 2-D transform, through basis.inverse
        transform = 7.5 * size * (FFT_NS * (1.0 + math.log2(max(size, 2)) / 16.0) + 2 * PASS_NS)
    else:  # the 1-D operators along both axes, plus a dense core and transposes
        fast = native.handles(plan.device, plan.dtype)
        transform = 2.0 * (plan.right.cost(rows, fast) + plan.left.cost(cols, fast))
    return transform + 2 * size * PASS_NS + 12 * OP_OVERHEAD


def route_costs(tokens: int, rows: int, cols: int, grad_input: bool, plan: AdapterPlan | None) -> dict[str, float]:
    """Estimated extra seconds per training step of each route, beyond the frozen layer's own matmuls.

    dense:   ΔW with graph + its backward + the recompute for gx, and the gᵀx matmul.
    merged:  ΔW + its recompute, the transforms of x and g, the sampled product over the entries.
    sparse:  forward transform of x, spread, inverse transform; backward transform of g, the
             sampled product (x transformed again unless its few read columns were kept), and
             for gx the spread and adjoint transform.
    compact: the same with the transforms restricted to the basis functions the entries touch,
             as spreads over their nonzeros (:mod:`.compact`); priced only when those are fewer
             than the full transforms could justify.
    """
    t = max(tokens, 1)
    delta = delta_cost(rows, cols, plan)
    recompute = delta if grad_input else 0.0
    dense_delta = delta if plan is None else 2.25 * delta  # basis.inverse: strided FFTs, masks, transposes
    costs = {"dense": 2 * dense_delta + recompute + t * rows * cols * MATMUL_NS + 10 * OP_OVERHEAD}
    if plan is None:
        return costs
    fast = native.handles(plan.device, plan.dtype)
    right, left = plan.right.cost(t, fast), plan.left.cost(t, fast)
    sampled, _ = _core_costs(t, plan.core, fast)
    costs["merged"] = delta + recompute + right + left + sampled + 8 * OP_OVERHEAD
    costs["sparse"] = _sparse_cost(t, plan, plan, grad_input, fast)
    # the compact route pays off only where its transforms cost less than the full ones
    per_token = (plan.right.cost(1024, fast) + plan.left.cost(1024, fast)) / 1024
    compact = plan.compact(limit=per_token / (NATIVE_SPREAD_NS if fast else SPREAD_NS))
    if compact is not None:
        costs["compact"] = _sparse_cost(t, plan, compact, grad_input, fast)
    return costs


def _core_costs(t: int, core: CoreProgram, fast: bool) -> tuple[float, float]:
    """(sampled product, spread) of ``core`` over ``t`` tokens, in estimated seconds."""
    chunks = 1 + t * core.entries // (1 << 18)
    widths = core.rows + core.cols
    if fast:  # each kernel transposes blocks of ĝ / x̂ in cache, then works on contiguous rows
        sampled = t * (core.entries * NATIVE_SAMPLED_NS + widths * NATIVE_TRANSPOSE_NS) + 2 * chunks * OP_OVERHEAD
    else:
        sampled = t * core.entries * SAMPLED_NS + 5 * chunks * OP_OVERHEAD
    return sampled, spread_cost(t, core.entries, widths, fast)


def _sparse_cost(t: int, plan: AdapterPlan, program, grad_input: bool, fast: bool) -> float:
    """The sparse route's estimated seconds for ``program`` (the plan itself, or its compact program)."""
    right, left = program.right.cost(t, fast), program.left.cost(t, fast)
    sampled, spread = _core_costs(t, program.core, fast)
    cost = right + spread + left + t * plan.rows * PASS_NS  # forward
    cost += left + sampled + (0.0 if program.core.keeps_columns else right)  # backward: transform g (and x)
    if grad_input:
        cost += spread + right + t * plan.cols * PASS_NS
    return (NATIVE_SPARSE_OVERHEAD if fast else SPARSE_OVERHEAD) * cost + 10 * OP_OVERHEAD


def choose_route(tokens: int, rows: int, cols: int, grad_input: bool, plan: AdapterPlan | None) -> str:
    costs = route_costs(tokens, rows, cols, grad_input, plan)
    return min(costs, key=costs.get)
