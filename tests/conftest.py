"""Shared fixtures, hypothesis profiles and strategies for the test suite.

Strategies here draw *shapes* and *seeds*; the matrices themselves are produced with a seeded
``torch.Generator`` so every example is cheap and reproducible.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Make the package importable when pytest is started without ``python -m`` from the repo root.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

# --------------------------------------------------------------------------------------------
# Hypothesis profiles: modest example counts, no deadlines (CPU timing on shared CI is noisy).
# Select another with HYPOTHESIS_PROFILE=thorough.
# --------------------------------------------------------------------------------------------
settings.register_profile(
    "default",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=True,
)
settings.register_profile(
    "thorough",
    parent=settings.get_profile("default"),
    max_examples=300,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --------------------------------------------------------------------------------------------
# Shape strategies
# --------------------------------------------------------------------------------------------
def general_shapes(max_side: int = 12) -> st.SearchStrategy[tuple[int, int]]:
    """Any (M, N): square and non-square, 1 x N, M x 1, odd, even, prime sizes."""
    side = st.integers(min_value=1, max_value=max_side)
    edge = st.sampled_from([(1, 1), (1, 7), (7, 1), (1, 2), (2, 1), (3, 5), (5, 3), (2, 2)])
    return st.one_of(edge, st.tuples(side, side))


def pow2_multiple_shapes(max_k: int = 3, max_mult: int = 3) -> st.SearchStrategy[tuple[int, int]]:
    """(a * 2**k, b * 2**k) with k >= 1: shapes a multi-level wavelet can handle."""
    return st.builds(
        lambda k, a, b: (a * 2**k, b * 2**k),
        st.integers(min_value=1, max_value=max_k),
        st.integers(min_value=1, max_value=max_mult),
        st.integers(min_value=1, max_value=max_mult),
    )


def supports(basis, shape: tuple[int, int]) -> bool:
    """True if ``basis.check_shape`` accepts ``shape`` (it raises ValueError otherwise)."""
    try:
        basis.check_shape(*shape)
    except ValueError:
        return False
    return True


def shapes_for(basis, max_side: int = 12) -> st.SearchStrategy[tuple[int, int]]:
    """Shapes that ``basis`` supports, whatever basis it is.

    Mixes fully general shapes (1 x N, odd, prime ...) with multiples of powers of two, then keeps
    those that the basis's own ``check_shape`` accepts, so a newly registered basis with shape
    restrictions is still exercised without a per-basis table.
    """
    return st.one_of(general_shapes(max_side), pow2_multiple_shapes()).filter(
        lambda s: supports(basis, s)
    )


SMALL_SHAPES = [(1, 1), (1, 5), (4, 1), (3, 5), (5, 3), (2, 2), (4, 6), (6, 4), (8, 8), (4, 16)]


def small_shapes_for(basis, candidates=SMALL_SHAPES) -> list[tuple[int, int]]:
    """The fixed small shapes (for dense-matrix and gradcheck tests) that ``basis`` supports."""
    ok = [s for s in candidates if supports(basis, s)]
    assert ok, f"basis {basis.name!r} supports none of the small test shapes {candidates}"
    return ok


seeds = st.integers(min_value=0, max_value=2**31 - 1)


def randn(*shape, seed: int = 0, dtype=torch.float64, device="cpu", scale: float = 1.0):
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
