"""``band`` (FourierFT's frequency bias): random positions from a low, mid or high frequency band.

What "frequency" means is the basis's business: :meth:`SpectralBasis.frequency` gives a value in
[0, 1] per position (a basis without one makes this selector an error). Positions are ranked by
frequency (ties by the lower index) and the ranks are cut into equal thirds, so every band holds
⌊M·N/3⌋ or so positions whatever the distribution of frequencies:

    low = ranks [0, MN/3),   mid = [MN/3, 2MN/3),   high = [2MN/3, MN)

* ``spread=None`` (default): n positions uniformly without replacement from the band (if n exceeds
  the band, the band is widened around its centre, in ranks, to exactly n positions).
* ``spread=σ``: a draw without replacement over *all* positions, weighted toward the band with
  w(q) = exp(−(r_q − c)²/(2σ²)), r_q = (rank_q + ½)/(MN) and c the band centre (1/6, 1/2, 5/6).
"""

from __future__ import annotations

import math

import torch

from .base import Selector, check_count
from .registry import register_selector

BANDS = {"low": 0, "mid": 1, "high": 2}


@register_selector("band")
class BandSelector(Selector):
    """n random positions from the ``band`` third of the positions ranked by the basis's frequency.

    Args:
        band: ``"low"``, ``"mid"`` or ``"high"``.
        spread: None for a uniform draw inside the band; a number σ > 0 for a draw over all
            positions weighted toward the band (see the module docstring).
    """

    needs_frequency = True

    def __init__(self, band: str = "low", spread: float | None = None):
        if band not in BANDS:
            raise ValueError(f"band must be one of {', '.join(BANDS)}, got {band!r}")
        if spread is not None and (
            isinstance(spread, bool) or not isinstance(spread, (int, float)) or not 0 < spread < math.inf
        ):
            raise ValueError(f"spread must be a positive number or None (uniform inside the band), got {spread!r}")
        self.band = band
        self.spread = None if spread is None else float(spread)

    def options(self) -> dict:
        return {"band": self.band, "spread": self.spread}

    def layer_scores(self, context):
        basis = context.basis
        if not basis.has_frequency:
            raise ValueError(
                f"the band selector needs a frequency per position, but basis {basis.name!r} states none "
                "(SpectralBasis.frequency); use a basis with a frequency map (e.g. dct, dht, dft, wavelet, wht)"
            )
        return {name: basis.frequency(*context.shape(name)) for name in context.targets}

    @staticmethod
    def ranks(frequency: torch.Tensor) -> torch.Tensor:
        """Rank of each flat position by frequency, ties by the lower index (0 = lowest)."""
        order = torch.sort(frequency.reshape(-1).double(), stable=True).indices
        ranks = torch.empty_like(order)
        ranks[order] = torch.arange(order.numel())
        return ranks

    def band_positions(self, frequency: torch.Tensor, at_least: int = 1) -> torch.Tensor:
        """Flat positions of the band (sorted), widened around its centre to ``at_least`` positions."""
        total = frequency.numel()
        ranks = self.ranks(frequency)
        k = BANDS[self.band]
        lo, hi = total * k // 3, total * (k + 1) // 3
        if hi - lo < at_least:
            lo = min(max(0, (lo + hi - at_least) // 2), total - at_least)
            hi = lo + at_least
        return torch.nonzero((ranks >= lo) & (ranks < hi)).squeeze(-1)

    def select(self, scores, shape, n, generator):
        check_count(n, shape)
        total = shape[0] * shape[1]
        if self.spread is None:
            candidates = self.band_positions(scores, at_least=n)
            chosen = candidates[torch.randperm(candidates.numel(), generator=generator)[:n]]
        else:
            relative = (self.ranks(scores).double() + 0.5) / total
            centre = (2 * BANDS[self.band] + 1) / 6
            weights = torch.exp(-((relative - centre) ** 2) / (2 * self.spread**2))
            chosen = torch.multinomial(weights.float().clamp_min(1e-30), n, replacement=False, generator=generator)
        return torch.sort(chosen).values
