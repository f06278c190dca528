"""``random``: n positions uniformly without replacement, ``torch.randperm(M·N)[:n]`` with a seeded
``torch.Generator`` (the same draw FourierFT makes)."""

from __future__ import annotations

import torch

from .base import Selector, check_count
from .registry import register_selector


@register_selector("random")
class RandomSelector(Selector):
    """n positions uniformly without replacement: ``randperm(M·N, generator)[:n]``."""

    needs_scores = False

    def select(self, scores, shape, n, generator):
        check_count(n, shape)
        total = shape[0] * shape[1]
        return torch.sort(torch.randperm(total, generator=generator)[:n]).values
