"""``gradient`` (SHiRA / QWHA style): the n positions with the largest accumulated |B(∂L/∂W0)|.

    score(q) = Σ_b |B(G_b)|_q,     G_b = ∂L(batch b)/∂W0   (the frozen model, eval mode)

A coefficient's first-order effect on the loss is ∂L/∂S_q = α·B(G)_q (B orthonormal: ∂W/∂S = B⁻¹
is Bᵀ), so these are the positions whose training would reduce the loss fastest at step 0.
Summing magnitudes per batch (not the signed gradient) keeps positions whose sign varies by batch.
"""

from __future__ import annotations

import torch

from .base import Selector, check_count, top_by_energy
from .registry import register_selector


@register_selector("gradient")
class GradientSelector(Selector):
    """Top-n positions by Σ over calibration batches of |B(∂L/∂W0)|.

    Args:
        batches: how many calibration batches to use (the first ones); None uses all.
    """

    uses_generator = False
    needs_data = True

    def __init__(self, batches: int | None = None):
        if batches is not None and (isinstance(batches, bool) or not isinstance(batches, int) or batches < 1):
            raise ValueError(f"batches must be an integer >= 1 or None (all), got {batches!r}")
        self.batches = batches

    def options(self) -> dict:
        return {"batches": self.batches}

    def layer_scores(self, context):
        context.require_calibration(self.name)
        scores: dict[str, torch.Tensor] = {}
        for grads in context.weight_gradients(self.batches):
            for name, grad in grads.items():
                spectrum = context.basis.forward(grad).abs()
                scores[name] = spectrum if name not in scores else scores[name] + spectrum
        return scores

    def select(self, scores, shape, n, generator):
        check_count(n, shape)
        return torch.sort(top_by_energy(scores, n)).values
