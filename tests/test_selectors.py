"""Selectors: properties every registered selector must have (parametrized over the registry and
checked against what each declares), discovery of a new selector module, and oracles written with
numpy / torch.randperm for the built-in ones."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

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


SELECTOR_NAMES = list_selectors()


def _instances():
    """Every registered selector with default options, plus the extremes of mixed's δ."""
    cases = [(name, {}) for name in SELECTOR_NAMES] + [("mixed", {"delta": 0.0}), ("mixed", {"delta": 1.0})]
    return [pytest.param(name, options, id=f"{name}{options or ''}") for name, options in cases]


@pytest.mark.parametrize("name,options", _instances())
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), frac=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_every_selector_returns_n_sorted_unique_positions_reproducibly(name, options, rows, cols, frac, seed):
    selector = get_selector(name, **options)
    n = max(1, round(frac * rows * cols))
    scores = scores_for((rows, cols), seed) if selector.needs_scores else None
    chosen = selector.select(scores, (rows, cols), n, gen(seed))
    assert chosen.dtype == torch.long and chosen.numel() == n
    assert torch.equal(chosen, torch.sort(chosen).values)
    assert chosen.unique().numel() == n
    assert 0 <= chosen.min() and chosen.max() < rows * cols
    assert torch.equal(chosen, selector.select(scores, (rows, cols), n, gen(seed)))  # same seed, same draw


@pytest.mark.parametrize("name,options", _instances())
def test_every_selector_honours_its_declared_inputs(name, options):
    """needs_scores False: works without scores and ignores them; uses_generator False: ignores the seed."""
    selector = get_selector(name, **options)
    shape, n = (7, 11), 23
    outputs = {
        (score_seed, seed): selector.select(
            scores_for(shape, score_seed) if selector.needs_scores else None, shape, n, gen(seed)
        )
        for score_seed in (0, 1) for seed in (0, 1, 2)
    }
    if not selector.needs_scores:
        assert torch.equal(selector.select(scores_for(shape, 5), shape, n, gen(0)), outputs[(0, 0)])
    else:  # scores matter: swapping in other scores changes the choice for these seeds
        assert any(not torch.equal(outputs[(0, s)], outputs[(1, s)]) for s in (0, 1, 2))
    if not selector.uses_generator:
        assert all(torch.equal(outputs[(k, 0)], outputs[(k, s)]) for k in (0, 1) for s in (1, 2))
    else:  # the generator matters: three seeds do not all give the same draw
        assert not all(torch.equal(outputs[(0, 0)], outputs[(0, s)]) for s in (1, 2))


@pytest.mark.parametrize("name", SELECTOR_NAMES)
@pytest.mark.parametrize("n", [0, 13, -1])
def test_every_selector_rejects_n_outside_one_to_mn(name, n):
    with pytest.raises(ValueError, match=r"1 <= n <= M\*N = 3\*4 = 12"):
        get_selector(name).select(scores_for((3, 4)), (3, 4), n, gen())


def test_a_new_selector_module_is_discovered(tmp_path):
    """Dropping one module with one decorator into the selectors package is all it takes."""
    package = Path(__file__).resolve().parents[1] / "spectral_peft"
    copy = tmp_path / "spectral_peft"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "studies"))
    (copy / "selectors" / "every_other.py").write_text(textwrap.dedent("""
        import torch
        from .base import Selector, check_count
        from .registry import register_selector

        @register_selector("every_other")
        class EveryOther(Selector):
            needs_scores = False
            uses_generator = False

            def select(self, scores, shape, n, generator):
                check_count(n, shape)
                return torch.arange(0, 2 * n, 2) % (shape[0] * shape[1])
    """))
    code = "import spectral_peft.selectors as s; print(s.list_selectors())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "'every_other'" in out.stdout and all(f"'{name}'" in out.stdout for name in SELECTOR_NAMES)


def test_registry_pattern_filter():
    assert list_selectors("m*") == [n for n in SELECTOR_NAMES if n.startswith("m")]


def test_unknown_selector_lists_valid_names():
    with pytest.raises(KeyError, match=", ".join(SELECTOR_NAMES)):
        get_selector("magnitude")


def test_duplicate_selector_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):

        @register_selector("energy")
        class Again(Selector):
            def select(self, scores, shape, n, generator):
                raise AssertionError


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


def test_energy_rejects_non_finite_scores():
    scores = scores_for((3, 4))
    scores[1, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        get_selector("energy").select(scores, (3, 4), 2, gen())
