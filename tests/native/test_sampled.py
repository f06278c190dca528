"""The compiled sampled product (spectral_peft.native.sampled) against its definition written as a sum.

out[e] = Σ_t a[t, ia_e] · b[t, ib_e], checked in float64 on hypothesis-drawn token counts (across
the kernel's 16-token blocks and 8-wide tiles), widths, entry lists, row strides and thread
counts; and the fallbacks: switched off, unsupported dtypes, no compiler (the build itself is
tested in test_library.py).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft.fastpath import core
from spectral_peft.native import library, sampled
from tests.conftest import seeds

HAS_COMPILER = library._compiler() is not None


def _definition(a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
    a64, b64 = a.double(), b.double()
    return torch.tensor([float(torch.dot(a64[:, i], b64[:, j])) for i, j in zip(ia.tolist(), ib.tolist())], dtype=torch.float64)


def _arrays(tokens, q_width, p_width, entries, pad, seed):
    gen = torch.Generator().manual_seed(seed)
    # Views with a row stride wider than the row (as a column block of a wider array is).
    a = torch.randn(tokens, q_width + pad, generator=gen)[:, pad:]
    b = torch.randn(tokens, p_width + 2 * pad, generator=gen)[:, :p_width]
    ia = torch.randint(0, q_width, (entries,), generator=gen)
    ib = torch.randint(0, p_width, (entries,), generator=gen)
    return a, b, ia, ib


@pytest.mark.skipif(not HAS_COMPILER, reason="needs a C compiler: this test checks the compiled kernel itself")
@given(
    tokens=st.integers(0, 70),
    q_width=st.integers(1, 37),
    p_width=st.integers(1, 37),
    entries=st.integers(1, 60),
    pad=st.integers(0, 3),
    threads=st.integers(1, 5),
    seed=seeds,
)
def test_equals_the_sum(tokens, q_width, p_width, entries, pad, threads, seed):
    a, b, ia, ib = _arrays(tokens, q_width, p_width, entries, pad, seed)
    got = sampled.sampled_product(a, b, ia, ib, threads=threads)
    assert got is not None and got.dtype == torch.float32 and got.shape == (entries,)
    expected = _definition(a, b, ia, ib)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5 * max(1.0, tokens ** 0.5))


@pytest.mark.skipif(not HAS_COMPILER, reason="needs a C compiler: this test checks the compiled kernel itself")
def test_the_same_for_every_thread_count_to_rounding():
    a, b, ia, ib = _arrays(300, 45, 29, 500, 1, seed=3)
    one = sampled.sampled_product(a, b, ia, ib, threads=1)
    for threads in (2, 3, 7, 64, 1000):
        torch.testing.assert_close(sampled.sampled_product(a, b, ia, ib, threads=threads), one, rtol=1e-5, atol=1e-4)
    # and the same numbers on a rerun (a fixed summation order per thread count)
    assert torch.equal(sampled.sampled_product(a, b, ia, ib, threads=3), sampled.sampled_product(a, b, ia, ib, threads=3))


@pytest.mark.skipif(not HAS_COMPILER, reason="needs a C compiler: this test checks the compiled kernel's input checks")
def test_indices_outside_the_arrays_are_refused():
    a, b, ia, ib = _arrays(10, 6, 4, 5, 0, seed=7)
    with pytest.raises(ValueError, match=r"ib must index 0..3"):
        sampled.sampled_product(a, b, ia, torch.tensor([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match=r"ia must index 0..5"):
        sampled.sampled_product(a, b, torch.tensor([0, -1, 2, 3, 4]), ib)
    with pytest.raises(ValueError, match="one length"):
        sampled.sampled_product(a, b, ia[:3], ib)


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("SPECTRAL_PEFT_NATIVE", "0")
    a, b, ia, ib = _arrays(20, 8, 8, 10, 0, seed=1)
    assert not library.handles("cpu", torch.float32)
    assert sampled.sampled_product(a, b, ia, ib) is None
    torch.testing.assert_close(core.sampled(a, b, ia, ib).double(), _definition(a, b, ia, ib), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_are_left_to_torch(dtype):
    a, b, ia, ib = _arrays(20, 8, 8, 10, 0, seed=2)
    a, b = a.to(dtype), b.to(dtype)
    assert sampled.sampled_product(a, b, ia, ib) is None
    tol = 1e-12 if dtype == torch.float64 else 5e-2
    torch.testing.assert_close(core.sampled(a, b, ia, ib).double(), _definition(a, b, ia, ib), rtol=tol, atol=tol * 5)


def test_without_a_compiler_the_torch_kernels_give_the_same_gradient(fresh_build, monkeypatch):
    a, b, ia, ib = _arrays(50, 12, 20, 40, 0, seed=4)
    program = core.CoreProgram(ia, ib, torch.arange(40), torch.rand(40, generator=torch.Generator().manual_seed(5)), 40, 12, 20)
    with_kernel = program.grad(a, b, 0.5)
    monkeypatch.setattr(library, "_tried", False)  # a new process, on a machine without a compiler
    monkeypatch.setattr(library, "_library", None)
    monkeypatch.setattr(library, "_compiler", lambda: None)
    assert sampled.sampled_product(a, b, ia, ib) is None
    torch.testing.assert_close(program.grad(a, b, 0.5), with_kernel, rtol=1e-5, atol=1e-5)
