"""The table of adapter test cases every (basis × selector) pair runs through, and small models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spectral_peft import SpectralConfig, list_bases, list_selectors
from spectral_peft.config import _accepts

# Shapes of the tiny model's layers: non-square, and even so every basis (wavelet too) accepts them.
IN, HIDDEN, OUT = 24, 32, 6


class TinyNet(nn.Module):
    """Linear(24→32) → GELU → Linear(32→24) → Linear(24→6) head."""

    def __init__(self, seed: int = 0, dtype=torch.float32):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.up = nn.Linear(IN, HIDDEN)
        self.down = nn.Linear(HIDDEN, IN)
        self.head = nn.Linear(IN, OUT)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        self.to(dtype)

    def forward(self, x):
        return self.head(self.down(torch.nn.functional.gelu(self.up(x))))


def tiny_input(batch: int = 5, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(batch, 3, IN, generator=torch.Generator().manual_seed(seed)).to(dtype)


def make_config(basis: str, selector: str, **overrides) -> SpectralConfig:
    """A config for (basis, selector); δ = 0.5 for selectors that take a δ."""
    kwargs = dict(basis=basis, selector=selector, n=20, alpha=2.0, seed=3, target_modules=["up", "down"])
    if _accepts(selector, "delta"):
        kwargs["delta"] = 0.5
    kwargs.update(overrides)
    return SpectralConfig(**kwargs)


BASIS_SELECTOR = [pytest.param(b, s, id=f"{b}-{s}") for b in list_bases() for s in list_selectors()]


def randomize_coefficients(model: nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    from spectral_peft import adapters

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in adapters(model).values():
            adapter.coefficients.copy_(torch.randn(adapter.n, generator=gen) * scale)
