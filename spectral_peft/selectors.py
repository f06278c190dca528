"""Coefficient selectors: which n of the M·N positions of B(W0) are trainable.

Each selector returns the chosen positions as sorted flat indices into the M×N coefficient
matrix (row-major, q = u·N + v):

* ``energy``: the n positions with the largest energy |B(W0)|², ties broken by the lower index.
* ``random``: n positions drawn uniformly without replacement, ``torch.randperm(M·N)[:n]`` with a
  seeded ``torch.Generator`` (the same draw FourierFT makes).
* ``mixed``:  the top k = ⌊δ·n⌋ positions by energy, then the remaining n − k drawn uniformly
  from the positions not yet taken (SSH, arXiv 2502.05539). δ = 1 equals ``energy``; δ = 0
  draws exactly like ``random`` with the same generator.

New selectors register like bases: ``@register_selector("name")`` on a :class:`Selector`
subclass.
"""

from __future__ import annotations

import abc
import math

import torch

from .registry import Registry


class Selector(abc.ABC):
    """Chooses n positions of an M×N coefficient matrix.

    Attributes:
        needs_scores: whether :meth:`select` needs the energy map |B(W0)|².
    """

    name: str = "<unregistered>"
    needs_scores: bool = True

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


SELECTORS: Registry[Selector] = Registry("selector", Selector)


def register_selector(name: str):
    """Class decorator registering a :class:`Selector` subclass as ``name``."""
    return SELECTORS.register(name)


def get_selector(name: str | Selector, **options) -> Selector:
    """An instance of the selector registered as ``name`` (unknown name: ``KeyError`` listing valid ones)."""
    return SELECTORS.get(name, **options)


def list_selectors(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered selectors, optionally filtered by an fnmatch pattern."""
    return SELECTORS.names(pattern)


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


@register_selector("energy")
class EnergySelector(Selector):
    """Top-n positions by energy |B(W0)|²."""

    def select(self, scores, shape, n, generator):
        check_count(n, shape)
        return torch.sort(top_by_energy(scores, n)).values


@register_selector("random")
class RandomSelector(Selector):
    """n positions uniformly without replacement: ``randperm(M·N, generator)[:n]``."""

    needs_scores = False

    def select(self, scores, shape, n, generator):
        check_count(n, shape)
        total = shape[0] * shape[1]
        return torch.sort(torch.randperm(total, generator=generator)[:n]).values


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
