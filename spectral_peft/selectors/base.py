"""The abstract :class:`Selector` and the helpers selectors share.

A selector works in two steps. :meth:`Selector.layer_scores` maps each target layer to a score
per position (by default the energy |B(W0)|²; selectors override it to score from gradients, a
stored update, learned scores or the basis's frequency map), and :meth:`Selector.select` turns
one layer's scores into the chosen positions: sorted flat indices into the M×N coefficient
matrix (row-major, q = u·N + v). Layers that share positions have their scores summed first.
New selectors are one module in this package with ``@register_selector("name")`` on a
:class:`Selector` subclass; they are discovered automatically.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..selection import SelectionContext


class Selector(abc.ABC):
    """Chooses n positions of an M×N coefficient matrix.

    Attributes (declared properties; the tests check every registered selector against them):
        needs_scores: whether :meth:`select` needs a score map (from :meth:`layer_scores`; by default
            the energy |B(W0)|²); when False it is called with ``scores=None`` and must not depend on them.
        uses_generator: whether :meth:`select` draws from the generator; when False the result
            must not depend on it.
        needs_data: whether :meth:`layer_scores` needs calibration batches (an error without them).
        seeded_scores: whether :meth:`layer_scores` draws random numbers seeded by the config's ``seed``.
        needs_frequency: whether it ranks by the basis's frequency map (``SpectralBasis.frequency``).
    """

    name: str = "<unregistered>"
    needs_scores: bool = True
    uses_generator: bool = True
    needs_data: bool = False
    seeded_scores: bool = False
    needs_frequency: bool = False

    def layer_scores(self, context: "SelectionContext") -> dict[str, torch.Tensor] | None:
        """A score map per target layer name (shape M×N), or None if :meth:`select` needs none.

        The default is the energy |B(W0)|² when ``needs_scores`` is set.
        """
        if not self.needs_scores:
            return None
        scores = {}
        for name in context.targets:
            weight = context.weight(name)
            if not torch.isfinite(weight).all():
                raise ValueError(
                    f"layer {name!r} has NaN or inf weights; energy-based selection ({self.name}) needs finite W0"
                )
            scores[name] = context.basis.forward(weight) ** 2
        return scores

    @abc.abstractmethod
    def select(
        self,
        scores: torch.Tensor | None,
        shape: tuple[int, int],
        n: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Sorted flat indices (int64, length ``n``) into an ``shape`` coefficient matrix.

        Args:
            scores: this layer's map from :meth:`layer_scores` (summed over layers sharing positions),
                shape ``shape``; None when :meth:`layer_scores` returns None.
            shape: (M, N).
            n: how many positions, 1 <= n <= M·N.
            generator: the seeded CPU generator for random draws.
        """

    def options(self) -> dict:
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


def check_count(n: int, shape: tuple[int, int]) -> None:
    """Raise ``ValueError`` unless 1 <= n <= M·N."""
    total = shape[0] * shape[1]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total:
        raise ValueError(f"n must be an integer with 1 <= n <= M*N = {shape[0]}*{shape[1]} = {total}, got {n!r}")


def top_by_energy(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the k largest scores; equal scores are ranked by the lower index."""
    flat = scores.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(flat).all():
        raise ValueError("energy selection needs finite weights, but B(W0) has NaN or inf entries")
    order = torch.sort(flat, descending=True, stable=True).indices
    return order[:k]


def uniform_without_replacement(candidates: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k entries of ``candidates`` drawn uniformly without replacement with ``generator``."""
    return candidates[torch.randperm(candidates.numel(), generator=generator)[:k]]
