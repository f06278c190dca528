"""``mixed``: the top k = ⌊δ·n⌋ positions by energy, then the remaining n − k drawn uniformly from the
positions not yet taken (SSH, arXiv 2502.05539). δ = 1 equals ``energy``; δ = 0 draws exactly like
``random`` with the same generator."""

from __future__ import annotations

import math

import torch

from .base import Selector, check_count, top_by_energy, uniform_without_replacement
from .registry import register_selector


@register_selector("mixed")
class MixedSelector(Selector):
    """Top ⌊δ·n⌋ positions by energy, the other n − ⌊δ·n⌋ uniformly among the rest.

    Args:
        delta: the energy ratio δ in [0, 1].
    """

    def __init__(self, delta: float = 0.7):
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 <= float(delta) <= 1.0:
            raise ValueError(f"delta must be a number in [0, 1], got {delta!r}")
        self.delta = float(delta)
        self.needs_scores = self.delta > 0
        self.uses_generator = self.delta < 1

    def options(self) -> dict:
        return {"delta": self.delta}

    def energy_count(self, n: int) -> int:
        """k = ⌊δ·n⌋, rounded first so that e.g. 0.29·100 is 29, not 28."""
        return math.floor(round(self.delta * n, 9))

    def select(self, scores, shape, n, generator):
        check_count(n, shape)
        total = shape[0] * shape[1]
        k = self.energy_count(n)
        top = top_by_energy(scores, k) if k > 0 else torch.empty(0, dtype=torch.long)
        taken = torch.zeros(total, dtype=torch.bool)
        taken[top] = True
        rest = uniform_without_replacement(torch.nonzero(~taken).squeeze(-1), n - k, generator)
        return torch.sort(torch.cat([top, rest])).values
