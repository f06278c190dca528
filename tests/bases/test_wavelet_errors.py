"""Shapes and options the wavelet basis must refuse, with a ValueError that names the problem;
and the shape checks of every other basis (which accept any M x N)."""

from __future__ import annotations

import re

import pytest
import torch

from spectral_peft import get_basis, list_bases


def _raises_on_construction_or_use(shape=(8, 8), **options):
    """The error may come from get_basis or, at the latest, from the first transform."""
    with pytest.raises(ValueError) as ei:
        b = get_basis("wavelet", **options)
        b.check_shape(*shape)
        b.forward(torch.zeros(shape, dtype=torch.float64))
    return str(ei.value)


@pytest.mark.parametrize("family", ["bior2.2", "rbio1.3", "bior4.4"])
def test_non_orthogonal_family_rejected(family):
    msg = _raises_on_construction_or_use(wavelet=family)
    assert family in msg or re.search(r"orthogonal", msg, re.I), msg


@pytest.mark.parametrize("family", ["db999", "not_a_wavelet", "morl", "mexh"])
def test_unknown_or_continuous_family_rejected(family):
    # morl / mexh exist in pywt but are continuous wavelets: no discrete transform
    msg = _raises_on_construction_or_use(wavelet=family)
    assert family in msg, msg


@pytest.mark.parametrize("level", [0, -1, -3])
def test_level_below_one_rejected(level):
    msg = _raises_on_construction_or_use(level=level)
    assert re.search(r"level", msg, re.I), msg


@pytest.mark.parametrize(
    "shape, level",
    [((6, 8), 2), ((8, 6), 2), ((12, 16), 3), ((16, 24), 4), ((2, 8), 2), ((64, 48), 5)],
)
def test_explicit_level_not_divisible_rejected(shape, level):
    M, N = shape
    b = get_basis("wavelet", wavelet="haar", level=level)
    with pytest.raises(ValueError) as ei:
        b.check_shape(M, N)
    msg = str(ei.value)
    assert re.search(r"divisib|level", msg, re.I), msg
    assert str(level) in msg or str(2**level) in msg, msg
    for fn in (b.forward, b.inverse):
        with pytest.raises(ValueError):
            fn(torch.zeros(M, N, dtype=torch.float64))
        with pytest.raises(ValueError):
            fn(torch.zeros(2, M, N, dtype=torch.float32))


@pytest.mark.parametrize("shape", [(5, 8), (8, 5), (7, 7), (1, 8), (8, 1), (1, 1), (3, 4), (6, 9)])
def test_odd_dimension_rejected(shape):
    M, N = shape
    b = get_basis("wavelet")
    with pytest.raises(ValueError) as ei:
        b.check_shape(M, N)
    msg = str(ei.value)
    assert str(M) in msg and str(N) in msg, f"message should name the shape {shape}: {msg}"
    for fn in (b.forward, b.inverse):
        with pytest.raises(ValueError):
            fn(torch.zeros(M, N, dtype=torch.float64))


@pytest.mark.parametrize("shape, level", [((6, 8), 1), ((8, 8), 3), ((16, 24), 3), ((2, 2), 1), ((64, 48), 4)])
def test_divisible_shapes_accepted(shape, level):
    b = get_basis("wavelet", wavelet="haar", level=level)
    b.check_shape(*shape)  # must not raise
    W = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(b.inverse(b.forward(W)), W)


@pytest.mark.parametrize("shape", [(2, 2), (2, 4), (4, 2), (6, 10), (30, 2)])
def test_default_level_always_at_least_one(shape):
    # db4's filter (length 8) is longer than these sides: dwt_max_level is 0, level 1 still works
    b = get_basis("wavelet", wavelet="db4")
    b.check_shape(*shape)
    W = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(b.inverse(b.forward(W)), W)


@pytest.mark.parametrize("name", [n for n in ["dht", "dht_separable", "dft", "dct", "identity"]])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (5, 3), (13, 17), (6, 8)])
def test_other_bases_accept_any_shape(name, shape):
    assert name in list_bases()
    b = get_basis(name)
    b.check_shape(*shape)  # must not raise
    W = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(b.inverse(b.forward(W)), W)
