from __future__ import annotations

import contextlib

import pytest
import torch

from spectral_peft.native import library

#: inputs every kernel leaves to torch (library.usable says no)
LEFT_TO_TORCH = ["float64", "bfloat16", "needs grad", "switched off"]


def left_to_torch_input(case: str, x: torch.Tensor, monkeypatch) -> torch.Tensor:
    """x made into the ``case`` of :data:`LEFT_TO_TORCH` (for "switched off", the kernels are)."""
    if case == "float64":
        return x.double()
    if case == "bfloat16":
        return x.bfloat16()
    if case == "needs grad":
        return x.requires_grad_()
    if case == "switched off":
        monkeypatch.setenv("SPECTRAL_PEFT_NATIVE", "0")
        return x
    raise ValueError(f"unknown case {case!r}")


@contextlib.contextmanager
def torch_threads(count: int):
    """torch's intra-op thread count (which the kernels use too) set to ``count`` inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """The library as in a new process, building into an empty cache."""
    monkeypatch.setenv("SPECTRAL_PEFT_CACHE", str(tmp_path))
    monkeypatch.setenv("SPECTRAL_PEFT_NATIVE", "1")
    monkeypatch.setattr(library, "_tried", False)
    monkeypatch.setattr(library, "_library", None)
    return tmp_path / "native"
