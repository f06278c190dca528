"""The compiled spread (spectral_peft.native.spread) against its definition written as a sum.

out[t, q] = Σ_{e: dst_e = q} scale_e · h[t, src_e] (zero where no entry lands), checked in float64
on hypothesis-drawn token counts (across the kernel's 16-token blocks and 8-wide tiles), widths,
entry lists with repeated sources and destinations (in drawn order or sorted into runs of one
destination), row strides and thread counts; the fallbacks;
and the sparse route through it against the route without it.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft.fastpath import core
from spectral_peft.native import library, spread
from tests.conftest import seeds
from tests.native.conftest import LEFT_TO_TORCH, left_to_torch_input, torch_threads

pytestmark = pytest.mark.skipif(library._compiler() is None, reason="needs a C compiler: these tests check the compiled kernel")


def _definition(h, src, dst, size, scale):
    h64, out = h.double(), torch.zeros(h.shape[0], size, dtype=torch.float64)
    for s, d, w in zip(src.tolist(), dst.tolist(), scale.double().tolist()):
        out[:, d] += w * h64[:, s]
    return out


def _inputs(tokens, p_width, size, entries, pad, seed):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(tokens, p_width + pad, generator=gen)[:, pad:]  # a row stride wider than the row
    src = torch.randint(0, p_width, (entries,), generator=gen)
    dst = torch.randint(0, size, (entries,), generator=gen)
    return h, src, dst, torch.randn(entries, generator=gen)


@given(
    tokens=st.integers(0, 70),
    p_width=st.integers(1, 37),
    size=st.integers(1, 37),
    entries=st.integers(0, 60),
    pad=st.integers(0, 3),
    threads=st.integers(1, 5),
    by_destination=st.booleans(),
    seed=seeds,
)
def test_equals_the_sum(tokens, p_width, size, entries, pad, threads, by_destination, seed):
    h, src, dst, scale = _inputs(tokens, p_width, size, entries, pad, seed)
    if by_destination:  # runs of one destination, of odd and even lengths (added in registers)
        order = torch.argsort(dst, stable=True)
        src, dst, scale = src[order], dst[order], scale[order]
    with torch_threads(threads):
        got = spread.spread(h, src, dst, size, scale)
    assert got is not None and got.dtype == torch.float32 and got.shape == (tokens, size) and got.is_contiguous()
    torch.testing.assert_close(got.double(), _definition(h, src, dst, size, scale), rtol=1e-5, atol=1e-5)


def test_every_thread_count_gives_the_same_numbers():
    h, src, dst, scale = _inputs(300, 45, 29, 500, 1, seed=3)  # repeated destinations: summation order matters
    one = spread.spread(h, src, dst, 29, scale, threads=1)
    for threads in (2, 3, 7, 64, 1000):
        assert torch.equal(spread.spread(h, src, dst, 29, scale, threads=threads), one)


def test_bad_indices_are_refused():
    h, src, dst, scale = _inputs(10, 6, 4, 5, 0, seed=7)
    with pytest.raises(ValueError, match=r"dst must index 0..3"):
        spread.spread(h, src, torch.tensor([0, 1, 2, 3, 4]), 4, scale)
    with pytest.raises(ValueError, match=r"src must index 0..5"):
        spread.spread(h, torch.tensor([0, -1, 2, 3, 4]), dst, 4, scale)
    with pytest.raises(ValueError, match="one length"):
        spread.spread(h, src[:3], dst, 4, scale)


@pytest.mark.parametrize("case", [*LEFT_TO_TORCH, "not 2-D"])
def test_left_to_torch(case, monkeypatch):
    h, src, dst, scale = _inputs(20, 8, 8, 10, 0, seed=2)
    h = h[None] if case == "not 2-D" else left_to_torch_input(case, h, monkeypatch)
    assert spread.spread(h, src, dst, 8, scale) is None
    if case != "not 2-D":  # the core's torch route gives the definition
        tol = 5e-2 if h.dtype == torch.bfloat16 else 1e-5
        got = core.spread(h.detach(), src, dst, 8, scale.to(h.dtype))
        torch.testing.assert_close(got.double(), _definition(h.detach(), src, dst, 8, scale), rtol=tol, atol=tol)


def test_the_core_goes_through_the_kernel_and_equals_its_torch_route(monkeypatch):
    h, src, dst, scale = _inputs(130, 50, 40, 300, 2, seed=5)
    program = core.CoreProgram(dst, src, torch.arange(300), scale, 300, 40, 50)
    c = torch.randn(300, generator=torch.Generator().manual_seed(6))
    calls = []
    kernel = spread.spread
    monkeypatch.setattr(spread, "spread", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    with_kernel = program.forward(h, c, 0.5)
    assert calls
    monkeypatch.setenv("SPECTRAL_PEFT_NATIVE", "0")
    torch.testing.assert_close(program.forward(h, c, 0.5), with_kernel, rtol=1e-5, atol=1e-5)
