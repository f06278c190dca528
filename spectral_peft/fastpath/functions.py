"""The adapter's training routes as custom autograd Functions.

All three compute y = x (W0 + ΔW)ᵀ + b with ΔW = α·B⁻¹(S) and return gradients for x, the
coefficients (and W0 / b if someone unfroze them); they differ in where the work goes:

``dense``   (any basis)  forward one matmul with W0 + ΔW; backward gx = g (W0 + ΔW) and the
            gradient of ΔW, gᵀx (a third matmul), is sent back through ``delta_weight()``'s own
            autograd graph (so the transform's adjoint is exactly the basis's). 3 matmuls in all,
            against peft FourierFT/WaveFT's 5 (base, ΔW, and in backward g W0, g ΔW, gᵀx).
``merged``  (factorized bases)  forward and gx as ``dense``; the coefficient gradient comes from
            the 1-D transforms of x and g and a sampled product over the n entries instead of gᵀx:
            2 matmuls, like the frozen base, plus O(M·N log) for ΔW and O(T·(M+N) log + T·n).
``sparse``  (factorized bases)  never forms ΔW: forward x W0ᵀ plus the transformed-activation
            path, backward g W0 plus its adjoint: O(T·(M log M + N log N + n)), no M·N work.

ΔW and W0 + ΔW are recomputed in backward rather than saved, and the transformed activations
are recomputed from the saved input x (which LoRA saves too), so a route saves no more for
backward than LoRA does. The activation transforms run over token chunks (``plan.token_chunks``),
so x̂, ĝ and the gathered entries only ever exist chunk-sized, in cache. Double backward is not
supported (the Functions are ``once_differentiable``).

Precision: the frozen layer's matmuls run in the *compute dtype* (the autocast dtype inside
``torch.autocast``, otherwise the activations' dtype, e.g. bfloat16 for a model cast with
``model.to(torch.bfloat16)``), exactly as the plain layer would; everything that touches the
coefficients (ΔW, the 1-D transforms, the sparse core and the coefficient gradient) runs in the
coefficients' dtype, float32, like peft's adapters under autocast. Autocast is switched off
inside the Functions so that these casts are explicit.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .shared import SHARED


def _flat(t: torch.Tensor, features: int) -> torch.Tensor:
    return t.reshape(-1, features)


def _no_autocast(t: torch.Tensor):
    device_type = t.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _cast(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(dtype)


def _base_output(x, weight, bias, compute_dtype):
    """x Wᵀ + b in the compute dtype (what ``F.linear`` gives under autocast or for a half model)."""
    return F.linear(x.to(compute_dtype), weight.to(compute_dtype), _cast(bias, compute_dtype))


def _linear_grads(ctx, g2, x2, weight_eff, weight_dtype, bias_dtype, weight_index=1, bias_index=2):
    """Gradients of x, W0 and b for y = x W_effᵀ + b (only those requested), g2 in the compute dtype."""
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        gx = g2 @ weight_eff.to(g2.dtype)
    if ctx.needs_input_grad[weight_index]:
        gw = (g2.T @ x2.to(g2.dtype)).to(weight_dtype)
    if ctx.needs_input_grad[bias_index]:
        gb = g2.sum(0).to(bias_dtype)
    return gx, gw, gb


def _plus_weight(delta: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """W0 + ΔW for a ΔW that the caller owns (built just now, without a graph): added in place into
    ΔW when it already has the sum's dtype and W0's layout (one weight-sized buffer fewer at the
    step's peak; a transposed W0, transformers' Conv1D, keeps the sum in its layout and matmul)."""
    if delta.dtype == torch.promote_types(delta.dtype, weight.dtype) and delta.stride() == weight.stride():
        return delta.add_(weight)
    return weight + delta


def _bias_dtype(bias):
    return None if bias is None else bias.dtype


class DenseLinear(torch.autograd.Function):
    """y = x (W0 + ΔW)ᵀ + b, with ΔW an input that carries its own autograd graph."""

    @staticmethod
    def forward(ctx, x, weight, bias, delta, recompute_delta, compute_dtype):
        ctx.recompute_delta, ctx.bias_dtype = recompute_delta, _bias_dtype(bias)
        ctx.save_for_backward(x, weight)
        with _no_autocast(x):
            return _base_output(x, weight + delta, bias, compute_dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        with _no_autocast(g):
            rows, cols = weight.shape
            g2, x2 = _flat(g, rows), _flat(x, cols)
            weight_eff = _plus_weight(ctx.recompute_delta(), weight) if ctx.needs_input_grad[0] else None
            gx, gw, gb = _linear_grads(ctx, g2, x2, weight_eff, weight.dtype, ctx.bias_dtype)
            del weight_eff
            gdelta = None
            if ctx.needs_input_grad[3]:
                precise = torch.promote_types(g2.dtype, torch.float32)
                gdelta = g2.T.to(precise) @ x2.to(precise)
        return (None if gx is None else gx.reshape(x.shape).to(x.dtype)), gw, gb, gdelta, None, None


class MergedLinear(torch.autograd.Function):
    """y = x (W0 + ΔW)ᵀ + b; the coefficient gradient from transformed activations."""

    @staticmethod
    def forward(ctx, x, weight, bias, coefficients, plan, alpha, delta_fn, compute_dtype):
        ctx.plan, ctx.alpha, ctx.delta_fn, ctx.bias_dtype = plan, alpha, delta_fn, _bias_dtype(bias)
        ctx.save_for_backward(x, weight, coefficients)
        if ctx.needs_input_grad[3]:
            SHARED.read(x)  # query/key/value read one x: its transform is computed once in backward
        with _no_autocast(x):
            return _base_output(x, _plus_weight(delta_fn(), weight), bias, compute_dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight, coefficients = ctx.saved_tensors
        plan = ctx.plan
        with _no_autocast(g):
            rows, cols = weight.shape
            g2, x2 = _flat(g, rows), _flat(x, cols)
            # the coefficient gradient first: its token chunks then never coexist with gx
            gc = plan.coefficient_grad(g2, x2, ctx.alpha, source=x) if ctx.needs_input_grad[3] else None
            weight_eff = _plus_weight(ctx.delta_fn(), weight) if ctx.needs_input_grad[0] else None
            gx, gw, gb = _linear_grads(ctx, g2, x2, weight_eff, weight.dtype, ctx.bias_dtype)
            del weight_eff
        gx = None if gx is None else gx.reshape(x.shape).to(x.dtype)
        return gx, gw, gb, gc, None, None, None, None


class SparseLinear(torch.autograd.Function):
    """y = x W0ᵀ + b + α·left(K(c)·right(x)); never forms ΔW.

    ``plan`` is the adapter's :class:`.plan.AdapterPlan` (the ``sparse`` route) or its
    :class:`.compact.CompactProgram` (the ``compact`` route: left, right and K restricted to the
    basis functions the entries touch); both give ``left``, ``right``, ``core`` and ``token_chunks``.

    Where the core reads few columns of x̂ (:meth:`.core.CoreProgram.keeps_columns`), the forward
    keeps those columns (tokens × distinct p, at most half of x's size) for the coefficient
    gradient, which then does not transform x again.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, coefficients, plan, alpha, compute_dtype):
        ctx.plan, ctx.alpha, ctx.bias_dtype = plan, alpha, _bias_dtype(bias)
        with _no_autocast(x):
            rows, cols = weight.shape
            x2 = _flat(x, cols)
            y = _base_output(x2, weight, bias, compute_dtype)
            core, left, right = plan.core, plan.left, plan.right
            precise = coefficients.dtype
            kept = None
            if ctx.needs_input_grad[3] and core.keeps_columns:
                kept = x2.new_empty(x2.shape[0], core.kept_columns.numel(), dtype=precise)
            for chunk in plan.token_chunks(x2.shape[0]):  # every intermediate stays chunk-sized
                xh = right.apply(x2[chunk].to(precise))
                if kept is None:
                    spectrum = core.forward(xh, coefficients, alpha)
                    del xh
                else:  # the spread reads the kept columns, narrower than x̂, which goes before ŷ exists
                    torch.index_select(xh, 1, core.kept_columns, out=kept[chunk])
                    del xh
                    spectrum = core.forward_from_kept(kept[chunk], coefficients, alpha)
                y[chunk].add_(left.apply(spectrum))
                del spectrum
        ctx.save_for_backward(x, weight, coefficients, kept)
        return y.reshape(*x.shape[:-1], rows)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight, coefficients, kept = ctx.saved_tensors
        plan = ctx.plan
        with _no_autocast(g):
            rows, cols = weight.shape
            g2, x2 = _flat(g, rows), _flat(x, cols)
            gx, gw, gb = _linear_grads(ctx, g2, x2, weight, weight.dtype, ctx.bias_dtype)
            want_c = ctx.needs_input_grad[3]
            gc = coefficients.new_zeros(plan.core.n) if want_c else None
            if gx is not None or want_c:
                core, left, right = plan.core, plan.left, plan.right
                precise = coefficients.dtype
                for chunk in plan.token_chunks(g2.shape[0]):
                    gh = left.adjoint(g2[chunk].to(precise))
                    if gx is not None:
                        gx[chunk].add_(right.adjoint(core.backward(gh, coefficients, ctx.alpha)))
                    if want_c and kept is not None:
                        gc.add_(core.grad_from_kept(gh, kept[chunk], ctx.alpha))
                    elif want_c:
                        gc.add_(core.grad(gh, right.apply(x2[chunk].to(precise)), ctx.alpha))
        if gx is not None:
            gx = gx.reshape(x.shape).to(x.dtype)
        return gx, gw, gb, gc, None, None, None


def sparse_delta_output(x: torch.Tensor, coefficients: torch.Tensor, plan, alpha: float) -> torch.Tensor:
    """α·x ΔWᵀ = α·left(K(c)·right(x)) with plain differentiable torch ops (for ``torch.compile``).

    The same product as :class:`SparseLinear`, without chunks or a custom Function, so that the
    compiler traces it and autograd derives its backward; computed in the coefficients' dtype and
    returned in it (x of shape (..., N), result (..., M)).
    """
    with _no_autocast(x):
        x2 = x.reshape(-1, plan.cols).to(coefficients.dtype)
        gathered = plan.right.apply(x2).index_select(1, plan.p) * plan.core.scale(coefficients, alpha)
        core = gathered.new_zeros(x2.shape[0], plan.core_rows).index_add(1, plan.q, gathered)
        return plan.left.apply(core).reshape(*x.shape[:-1], plan.rows)
