"""The ``patchwise`` wrapper against a loop of the inner basis over blocks, and its hierarchy."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import get_basis, list_bases
from tests.conftest import randn, seeds

INNER = [name for name in list_bases() if name != "patchwise"]


def supports(basis, shape):
    try:
        basis.check_shape(*shape)
    except ValueError:
        return False
    return True


def loop_patchwise(inner, W, bm, bn, fn="forward"):
    """The definition: the inner basis applied to every bm × bn block, written as a loop."""
    out = torch.empty_like(W)
    for i in range(0, W.shape[-2], bm):
        for j in range(0, W.shape[-1], bn):
            out[..., i : i + bm, j : j + bn] = getattr(inner, fn)(W[..., i : i + bm, j : j + bn])
    return out


def loop_hierarchy(inner, W, bm, bn, levels):
    """Level 1 per block, then the grid of block (0, 0) coefficients transformed again (the last level globally)."""
    if levels == 1:
        return inner.forward(W)
    C = loop_patchwise(inner, W, bm, bn)
    grid = C[::bm, ::bn].clone()
    C[::bm, ::bn] = loop_hierarchy(inner, grid, bm, bn, levels - 1) if levels > 2 else inner.forward(grid)
    return C


@pytest.mark.parametrize("inner", INNER)
@given(block=st.sampled_from([(2, 2), (4, 4), (2, 4), (4, 2), (8, 4)]), grid=st.sampled_from([(1, 1), (2, 3), (3, 2)]), seed=seeds)
def test_patchwise_equals_the_inner_basis_looped_over_blocks(inner, block, grid, seed):
    bm, bn = block
    basis = get_basis("patchwise", inner=inner, block=[bm, bn])
    if not supports(basis.inner, block):
        return  # this inner basis cannot transform such a block (e.g. wavelet on 2x2 is fine, odd sizes not)
    W = randn(grid[0] * bm, grid[1] * bn, seed=seed)
    torch.testing.assert_close(basis.forward(W), loop_patchwise(basis.inner, W, bm, bn))
    torch.testing.assert_close(basis.inverse(W), loop_patchwise(basis.inner, W, bm, bn, "inverse"))


@pytest.mark.parametrize("inner", ["dct", "dht", "wht"])
@pytest.mark.parametrize("levels", [2, 3])
def test_hierarchical_patchwise_equals_the_nested_loop(inner, levels):
    bm, bn = 2, 4
    rows, cols = 2 * bm**levels, bn**levels
    W = randn(rows, cols, seed=levels)
    basis = get_basis("patchwise", inner=inner, block=[bm, bn], levels=levels)
    torch.testing.assert_close(basis.forward(W), loop_hierarchy(get_basis(inner), W, bm, bn, levels))
    torch.testing.assert_close(basis.inverse(basis.forward(W)), W)


def test_hierarchical_global_level_sees_the_block_means():
    # a matrix constant on each 4x4 block: all its energy sits in the grid of block means, which
    # the global DCT level transforms; a constant matrix then has a single nonzero coefficient
    W = torch.ones(8, 16, dtype=torch.float64)
    C = get_basis("patchwise", inner="dct", block=4, levels=2).forward(W)
    assert torch.count_nonzero(C.abs() > 1e-12) == 1
    torch.testing.assert_close(C[0, 0], torch.linalg.vector_norm(W))


def test_orthonormal_flags_follow_the_inner_basis():
    assert get_basis("patchwise", inner="dct").orthonormal
    compat = get_basis("patchwise", inner="dft", inner_options={"fourierft_compat": True})
    assert not compat.orthonormal and not compat.invertible


@pytest.mark.parametrize(
    "options, shape, message",
    [
        ({"block": 64}, (384, 100), r"block 64x64 does not divide the 384x100 matrix"),
        ({"block": [4, 8]}, (8, 12), r"block 4x8 does not divide the 8x12 matrix"),
        ({"block": 4, "levels": 3}, (24, 24), r"does not divide the 6x6 matrix at level 2"),
        ({"inner": "wht", "block": 6}, (12, 12), r"patchwise\(wht, block 6x6, levels=1\): wht basis needs"),
    ],
)
def test_shapes_that_do_not_fit_are_a_clear_error(options, shape, message):
    with pytest.raises(ValueError, match=message):
        get_basis("patchwise", **options).forward(torch.zeros(shape))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"block": 0}, r"block must be an int or a pair"),
        ({"block": [2, 2, 2]}, r"block must be an int or a pair"),
        ({"levels": 0}, r"levels must be an integer >= 1"),
        ({"inner": "patchwise"}, r"cannot be patchwise itself"),
    ],
)
def test_bad_options_are_a_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        get_basis("patchwise", **options)


def test_unknown_inner_basis_lists_the_registered_ones():
    with pytest.raises(KeyError, match="registered bases: .*dct"):
        get_basis("patchwise", inner="nope")


def test_frequency_tiles_the_inner_map_and_lowers_coarser_levels():
    inner = get_basis("dct")
    plain = get_basis("patchwise", inner="dct", block=4).frequency(8, 12)
    torch.testing.assert_close(plain, inner.frequency(4, 4).repeat(2, 3))
    nested = get_basis("patchwise", inner="dct", block=4, levels=2).frequency(8, 12)
    expected = inner.frequency(4, 4).repeat(2, 3)
    expected[::4, ::4] = inner.frequency(2, 3) / 4
    torch.testing.assert_close(nested, expected)
    assert not get_basis("patchwise", inner="identity").has_frequency


@pytest.mark.parametrize("inner", INNER)
def test_plain_patchwise_reuses_the_inner_factorization_for_every_block(inner):
    basis = get_basis("patchwise", inner=inner, block=4)
    positions = torch.randperm(8 * 16, generator=torch.Generator().manual_seed(0))[:40]
    factorization = basis.factorization(8, 16, positions)
    assert factorization is not None, f"patchwise({inner}) takes the dense route"
    c = randn(40, seed=1)
    dense = torch.zeros(8 * 16, dtype=torch.float64)
    dense[positions] = c
    torch.testing.assert_close(factorization.dense(c), basis.inverse(dense.view(8, 16)))


@pytest.mark.parametrize("name, options, shape", [
    ("patchwise", {"inner": "dct", "block": 64}, (384, 384)),
    ("patchwise", {"inner": "wht", "block": 128}, (384, 1536)),
    ("patchwise", {"inner": "dct", "block": 8, "levels": 2}, (384, 384)),
    ("patchwise", {"inner": "dht", "block": 4, "levels": 3}, (384, 1536)),
    ("wht", {}, (256, 512)),
])
def test_new_bases_train_on_a_fast_route_at_model_sizes(name, options, shape):
    from torch import nn

    from spectral_peft import SpectralAdapter

    layer = nn.Linear(shape[1], shape[0])
    adapter = SpectralAdapter(layer, get_basis(name, **options), torch.arange(0, shape[0] * shape[1], 97))
    x = torch.randn(8, shape[1], requires_grad=True)
    adapter(x).sum().backward()
    assert adapter.last_route in ("sparse", "merged")
    assert adapter.coefficients.grad is not None


@pytest.mark.parametrize("inner", ["dct", "dht", "dft", "wht", "identity"])
def test_hierarchical_factorization_rebuilds_the_basis_inverse(inner):
    """left·K·right of the stacked levels equals B⁻¹(S) of the hierarchy, positions on every level."""
    basis = get_basis("patchwise", inner=inner, block=2, levels=3)
    rows, cols = 8, 16
    g = torch.Generator().manual_seed(3)
    positions = torch.cat([torch.tensor([0, 4 * cols + 8, 2 * cols + 2, 1]), torch.randperm(rows * cols, generator=g)[:20]]).unique()
    f = basis.factorization(rows, cols, positions)
    assert f is not None and len(f.left.adjoint_blocks(torch.zeros(1, rows, dtype=torch.float64))) == 3  # one block per level
    coefficients = torch.randn(positions.numel(), generator=g, dtype=torch.float64)
    S = torch.zeros(rows * cols, dtype=torch.float64)
    S[positions] = coefficients
    torch.testing.assert_close(f.dense(coefficients), basis.inverse(S.view(rows, cols)))


def test_hierarchy_without_a_rank_one_block_mean_takes_the_dense_route():
    class Mixing:  # an orthonormal block transform whose (0, 0) pattern is not rank one
        q = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]

        def inverse(self, c):
            return (self.q.T @ c.reshape(-1)).reshape(2, 2)

    basis = get_basis("patchwise", inner="dct", block=2, levels=2)
    basis.inner = Mixing()
    assert basis.factorization(4, 4, torch.arange(5)) is None
