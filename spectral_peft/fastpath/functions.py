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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def _flat(t: torch.Tensor, features: int) -> torch.Tensor:
    return t.reshape(-1, features)


def _linear_grads(ctx, g2, x2, weight_eff, weight_needed_index=1, bias_index=2):
    """Gradients of x, W0 and b for y = x W_effᵀ + b (only those requested)."""
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        gx = g2 @ weight_eff
    if ctx.needs_input_grad[weight_needed_index]:
        gw = g2.T @ x2
    if ctx.needs_input_grad[bias_index]:
        gb = g2.sum(0)
    return gx, gw, gb


class DenseLinear(torch.autograd.Function):
    """y = x (W0 + ΔW)ᵀ + b, with ΔW an input that carries its own autograd graph."""

    @staticmethod
    def forward(ctx, x, weight, bias, delta, recompute_delta):
        ctx.recompute_delta = recompute_delta
        ctx.save_for_backward(x, weight)
        return F.linear(x, weight + delta.to(weight.dtype), bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        rows, cols = weight.shape
        g2, x2 = _flat(g, rows), _flat(x, cols)
        weight_eff = weight + ctx.recompute_delta().to(weight.dtype) if ctx.needs_input_grad[0] else None
        gx, gw, gb = _linear_grads(ctx, g2, x2, weight_eff)
        del weight_eff
        gdelta = g2.T @ x2 if ctx.needs_input_grad[3] else None
        return (None if gx is None else gx.reshape(x.shape)), gw, gb, gdelta, None


class MergedLinear(torch.autograd.Function):
    """y = x (W0 + ΔW)ᵀ + b; the coefficient gradient from transformed activations."""

    @staticmethod
    def forward(ctx, x, weight, bias, coefficients, plan, alpha, delta_fn):
        ctx.plan, ctx.alpha, ctx.delta_fn = plan, alpha, delta_fn
        ctx.save_for_backward(x, weight, coefficients)
        return F.linear(x, weight + delta_fn().to(weight.dtype), bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight, coefficients = ctx.saved_tensors
        plan = ctx.plan
        rows, cols = weight.shape
        g2, x2 = _flat(g, rows), _flat(x, cols)
        weight_eff = weight + ctx.delta_fn().to(weight.dtype) if ctx.needs_input_grad[0] else None
        gx, gw, gb = _linear_grads(ctx, g2, x2, weight_eff)
        del weight_eff
        gc = plan.coefficient_grad(g2, x2, ctx.alpha) if ctx.needs_input_grad[3] else None
        return (None if gx is None else gx.reshape(x.shape)), gw, gb, gc, None, None, None


class SparseLinear(torch.autograd.Function):
    """y = x W0ᵀ + b + α·left(K(c)·right(x)); never forms ΔW."""

    @staticmethod
    def forward(ctx, x, weight, bias, coefficients, plan, alpha):
        ctx.plan, ctx.alpha = plan, alpha
        ctx.save_for_backward(x, weight, coefficients)
        rows, cols = weight.shape
        x2 = _flat(x, cols)
        y = F.linear(x2, weight, bias)
        core, left, right = plan.core, plan.left, plan.right
        for chunk in plan.token_chunks(x2.shape[0]):  # every intermediate stays chunk-sized
            y[chunk].add_(left.apply(core.forward(right.apply(x2[chunk]), coefficients, alpha)))
        return y.reshape(*x.shape[:-1], rows)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight, coefficients = ctx.saved_tensors
        plan = ctx.plan
        rows, cols = weight.shape
        g2, x2 = _flat(g, rows), _flat(x, cols)
        gx, gw, gb = _linear_grads(ctx, g2, x2, weight)
        want_c = ctx.needs_input_grad[3]
        gc = coefficients.new_zeros(plan.n) if want_c else None
        if gx is not None or want_c:
            core, left, right = plan.core, plan.left, plan.right
            for chunk in plan.token_chunks(g2.shape[0]):
                gh = left.adjoint(g2[chunk])
                if gx is not None:
                    gx[chunk].add_(right.adjoint(core.backward(gh, coefficients, ctx.alpha)))
                if want_c:
                    gc.add_(core.grad(gh, right.apply(x2[chunk]), ctx.alpha))
        if gx is not None:
            gx = gx.reshape(x.shape)
        return gx, gw, gb, gc, None, None

