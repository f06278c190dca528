"""The abstract :class:`Selector` and the helpers selectors share.

A selector returns the chosen positions as sorted flat indices into the M×N coefficient matrix
(row-major, q = u·N + v). New selectors are one module in this package with
``@register_selector("name")`` on a :class:`Selector` subclass; they are discovered automatically.
"""

from __future__ import annotations

import abc

import torch


class Selector(abc.ABC):
    """Chooses n positions of an M×N coefficient matrix.

    Attributes (declared properties; the tests check every registered selector against them):
        needs_scores: whether :meth:`select` needs the energy map |B(W0)|²; when False it is
            called with ``scores=None`` and must not depend on them.
        uses_generator: whether :meth:`select` draws from the generator; when False the result
            must not depend on it.
    """

    name: str = "<unregistered>"
    needs_scores: bool = True
    uses_generator: bool = True

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
            scores: energy per position, shape ``shape`` (None when ``needs_scores`` is False).
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
