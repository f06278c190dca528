"""Selectors against oracles written with numpy / torch.randperm, plus properties and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import get_selector, list_selectors
from spectral_peft.selectors import Selector, register_selector
from spectral_peft.selectors.mixed import MixedSelector


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def scores_for(shape, seed=0):
    return torch.rand(shape, generator=gen(seed), dtype=torch.float64)


def build(name, delta=0.5):
    return get_selector(name, delta=delta) if name == "mixed" else get_selector(name)


def test_registry_lists_the_three_selectors():
    assert {"energy", "random", "mixed"} <= set(list_selectors())
    assert list_selectors("m*") == ["mixed"]


def test_unknown_selector_lists_valid_names():
    with pytest.raises(KeyError, match=", ".join(list_selectors())):
        get_selector("magnitude")


def test_duplicate_selector_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):

        @register_selector("energy")
        class Again(Selector):
            def select(self, scores, shape, n, generator):
                raise AssertionError


@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    frac=st.floats(0, 1),
    seed=st.integers(0, 2**16),
    name=st.sampled_from(["energy", "random", "mixed"]),
    delta=st.floats(0, 1),
)
def test_output_is_sorted_unique_in_range_and_of_length_n(rows, cols, frac, seed, name, delta):
    n = max(1, round(frac * rows * cols))
    chosen = build(name, delta).select(scores_for((rows, cols), seed), (rows, cols), n, gen(seed))
    assert chosen.dtype == torch.long and chosen.numel() == n
    assert torch.equal(chosen, torch.sort(chosen).values)
    assert chosen.unique().numel() == n
    assert 0 <= chosen.min() and chosen.max() < rows * cols


def test_energy_is_top_n_by_numpy_argsort():
    scores = scores_for((13, 7), seed=4)
    expected = np.sort(np.argsort(-scores.numpy().reshape(-1), kind="stable")[:17])
    chosen = get_selector("energy").select(scores, (13, 7), 17, gen())
    np.testing.assert_array_equal(chosen.numpy(), expected)


def test_energy_ties_are_broken_by_the_lower_index():
    scores = torch.ones(4, 5)
    scores[3, 4] = 2.0
    chosen = get_selector("energy").select(scores, (4, 5), 3, gen())
    assert chosen.tolist() == [0, 1, 19]


def test_random_is_randperm_of_the_seeded_generator():
    chosen = get_selector("random").select(None, (10, 30), 25, gen(7))
    expected = torch.randperm(300, generator=torch.Generator().manual_seed(7))[:25]
    assert chosen.tolist() == sorted(expected.tolist())


@pytest.mark.parametrize("n", [1, 7, 10, 33])
def test_mixed_delta_one_equals_energy_and_delta_zero_equals_random(n):
    scores = scores_for((8, 9), seed=n)
    assert torch.equal(
        get_selector("mixed", delta=1.0).select(scores, (8, 9), n, gen(5)),
        get_selector("energy").select(scores, (8, 9), n, gen(5)),
    )
    assert torch.equal(
        get_selector("mixed", delta=0.0).select(scores, (8, 9), n, gen(5)),
        get_selector("random").select(None, (8, 9), n, gen(5)),
    )


@given(delta=st.floats(0, 1), n=st.integers(1, 60), seed=st.integers(0, 1000))
def test_mixed_contains_the_top_floor_delta_n_and_the_rest_outside_it(delta, n, seed):
    scores = scores_for((8, 9), seed)
    chosen = set(get_selector("mixed", delta=delta).select(scores, (8, 9), n, gen(seed)).tolist())
    k = math.floor(round(delta * n, 9))
    top = set(np.argsort(-scores.numpy().reshape(-1), kind="stable")[:k].tolist())
    assert top <= chosen
    assert len(chosen) == n


def test_mixed_energy_count_uses_floor_of_delta_n():
    assert MixedSelector(0.7).energy_count(10) == 7
    assert MixedSelector(0.29).energy_count(100) == 29
    assert MixedSelector(0.5).energy_count(3) == 1


def test_mixed_random_part_is_uniform_over_the_remaining_positions():
    # 12 positions, the top 2 by energy are fixed; the 2 random draws should hit each of the
    # other 10 equally often (chi-square test at a generous threshold, fixed seeds).
    scores = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    counts = np.zeros(12)
    for seed in range(2000):
        for q in get_selector("mixed", delta=0.5).select(scores, (3, 4), 4, gen(seed)).tolist():
            counts[q] += 1
    assert counts[11] == counts[10] == 2000
    rest = counts[:10]
    expected = 2000 * 2 / 10
    chi2 = ((rest - expected) ** 2 / expected).sum()
    assert chi2 < 30  # 9 degrees of freedom: p ≈ 4e-4
    assert counts.sum() == 8000


@pytest.mark.parametrize("delta", [-0.1, 1.5, "0.5", True])
def test_mixed_rejects_delta_outside_unit_interval(delta):
    with pytest.raises(ValueError, match=r"delta must be a number in \[0, 1\]"):
        get_selector("mixed", delta=delta)


@pytest.mark.parametrize("name", ["energy", "random", "mixed"])
@pytest.mark.parametrize("n", [0, 13, -1])
def test_n_outside_one_to_mn_is_an_error(name, n):
    with pytest.raises(ValueError, match=r"1 <= n <= M\*N = 3\*4 = 12"):
        build(name).select(scores_for((3, 4)), (3, 4), n, gen())


def test_energy_rejects_non_finite_scores():
    scores = scores_for((3, 4))
    scores[1, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        get_selector("energy").select(scores, (3, 4), 2, gen())
