"""The table of adapter test cases every (basis × selector) pair runs through, and small models."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from spectral_peft import Calibration, SpectralConfig, get_basis, get_selector, inject, list_bases, list_selectors
from spectral_peft.config import _accepts

# Shapes of the tiny model's layers: non-square powers of two, so every basis (wavelet, wht too) accepts them.
IN, HIDDEN, OUT = 16, 32, 6


class TinyNet(nn.Module):
    """Linear(16→32) → GELU → Linear(32→16) → Linear(16→6) head."""

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


@functools.lru_cache(maxsize=1)
def tiny_updates_path() -> str:
    """A safetensors file of stored updates ΔW for TinyNet's ``up`` and ``down`` (for ``oracle``)."""
    from safetensors.torch import save_file

    folder = Path(tempfile.mkdtemp(prefix="spectral_peft_tests_"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    gen = torch.Generator().manual_seed(11)
    path = folder / "updates.safetensors"
    save_file({"up": torch.randn(HIDDEN, IN, generator=gen), "down": torch.randn(IN, HIDDEN, generator=gen)}, str(path))
    return str(path)


def _calibration_loss(model, x):
    return model(x).pow(2).mean()


#: calibration batches for selectors that choose positions from data
CALIBRATION = Calibration([tiny_input(batch=8, seed=20 + i) for i in range(3)], _calibration_loss)


def make_config(basis: str, selector: str, **overrides) -> SpectralConfig:
    """A config for (basis, selector): δ = 0.5 for selectors that take a δ, the stored TinyNet
    updates for selectors that read ``updates``, a 10-step warm-up for those with ``steps``."""
    kwargs = dict(basis=basis, selector=selector, n=20, alpha=2.0, seed=3, target_modules=["up", "down"])
    if _accepts(selector, "delta"):
        kwargs["delta"] = 0.5
    options = {}
    if _accepts(selector, "updates"):
        options["updates"] = tiny_updates_path()
    if _accepts(selector, "steps"):
        options["steps"] = 10
    kwargs["selector_options"] = options
    kwargs.update(overrides)
    return SpectralConfig(**kwargs)


def adapt(model: nn.Module, config: SpectralConfig) -> nn.Module:
    """``inject`` with the calibration batches (selectors that need no data ignore them)."""
    return inject(model, config, calibration=CALIBRATION)


def _compatible(basis: str, selector: str) -> bool:
    """Whether the pair can run: a selector ranking by frequency needs a basis that states one."""
    return not get_selector(selector, **make_config("dct", selector).selector_options).needs_frequency or (
        get_basis(basis).has_frequency
    )


BASIS_SELECTOR = [
    pytest.param(b, s, id=f"{b}-{s}") for b in list_bases() for s in list_selectors() if _compatible(b, s)
]


def randomize_coefficients(model: nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    from spectral_peft import adapters

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in adapters(model).values():
            adapter.coefficients.copy_(torch.randn(adapter.n, generator=gen) * scale)
