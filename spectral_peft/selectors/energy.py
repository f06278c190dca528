"""``energy``: the n positions with the largest energy |B(W0)|², ties broken by the lower index."""

from __future__ import annotations

import torch

from .base import Selector, check_count, top_by_energy
from .registry import register_selector


@register_selector("energy")
class EnergySelector(Selector):
    """Top-n positions by energy |B(W0)|²."""

    uses_generator = False

    def select(self, scores, shape, n, generator):
        check_count(n, shape)
        return torch.sort(top_by_energy(scores, n)).values
