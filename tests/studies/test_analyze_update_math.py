"""The update analysis on matrices with known structure, for every registered basis.

Oracles: the definition written out (sorting and summing), a least-squares projection with
scipy.linalg.lstsq, the Gaussian tail integral with scipy.integrate.quad, set arithmetic.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import get_basis, list_bases, list_selectors, register_selector
from spectral_peft.selectors import SELECTORS, Selector
from spectral_peft.studies.update_analysis import spectra
from spectral_peft.studies.update_analysis.analysis import AnalysisConfig, analyse_update
from tests.conftest import randn, seeds, shapes_for, supports

ORTHONORMAL = [name for name in list_bases() if get_basis(name).orthonormal]
NAME = "backbone.encoder.layer.0.attention.self.query"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _shape_for(basis, *candidates: tuple[int, int]) -> tuple[int, int]:
    """The first candidate shape the basis accepts (e.g. powers of two only for a Hadamard basis)."""
    usable = [shape for shape in candidates if supports(basis, shape)]
    assert usable, f"{basis.name} accepts none of {candidates}"
    return usable[0]


def _planted(basis, shape, positions, seed, scale=10.0, noise=1e-2):
    """ΔW = B⁻¹(S) + noise with S nonzero exactly at ``positions`` (magnitudes in [scale, 2·scale])."""
    g = torch.Generator().manual_seed(seed)
    s = torch.zeros(shape[0] * shape[1], dtype=torch.float64)
    signs = torch.where(torch.rand(len(positions), generator=g) < 0.5, -1.0, 1.0).double()
    s[positions] = signs * scale * (1 + torch.rand(len(positions), generator=g, dtype=torch.float64))
    clean = basis.inverse(s.reshape(shape))
    return clean + noise * torch.randn(shape, generator=g, dtype=torch.float64), s


@pytest.mark.parametrize("basis_name", ORTHONORMAL)
def test_planted_coefficients_are_recovered_with_their_energy(basis_name):
    basis = get_basis(basis_name)
    shape = _shape_for(basis, (16, 24), (16, 32))
    total = shape[0] * shape[1]
    planted = torch.randperm(total, generator=torch.Generator().manual_seed(1))[:10]
    delta, s = _planted(basis, shape, planted, seed=2)
    e = spectra.energy(basis, delta)
    assert torch.equal(spectra.top_positions(e, 10), torch.sort(planted).values)
    noise_energy = float(((delta - basis.inverse(s.reshape(shape))) ** 2).sum())
    expected = float((s**2).sum()) / (float((s**2).sum()) + noise_energy)
    assert spectra.compaction_curve(e, [10])[0] == pytest.approx(expected, abs=1e-4)
    assert spectra.compaction_curve(e, [10])[0] == pytest.approx(
        spectra.projection_fraction(basis, delta, planted), abs=1e-10)
    k50, k90 = spectra.k_for_fraction(e, (0.5, 0.9))
    assert k50 <= 10 and k90 <= 10


@pytest.mark.parametrize("basis_name", ORTHONORMAL)
def test_analysis_reaches_the_planted_update_when_w0_shares_its_positions(basis_name):
    basis = get_basis(basis_name)
    shape, n = _shape_for(basis, (16, 24), (16, 32)), 12
    planted = torch.randperm(shape[0] * shape[1], generator=torch.Generator().manual_seed(3))[:n]
    delta, _ = _planted(basis, shape, planted, seed=4)
    w0, _ = _planted(basis, shape, planted, seed=5, scale=3.0, noise=1e-3)
    result = analyse_update({NAME: w0.float()}, {NAME: delta.float()}, seed=0,
                            config=AnalysisConfig(n_values=[n], deltas=[0.0, 0.5, 1.0], bases=[basis_name]))
    reach = {r["label"]: r for r in result.reachable}
    oracle = reach["energy"]["oracle"]
    assert oracle > 0.999
    assert reach["energy"]["fraction"] == pytest.approx(oracle, abs=1e-6)  # W0 points at exactly ΔW's positions
    assert reach["mixed δ=1"]["fraction"] == pytest.approx(oracle, abs=1e-6)
    assert reach["random"]["fraction"] < 0.5 * oracle  # 12 of several hundred positions drawn blind rarely hit them
    assert reach["mixed δ=0"]["fraction"] == pytest.approx(reach["random"]["fraction"])  # same draw
    # δ = 0.5: the 6 positions with the most W0 energy are taken, the other 6 drawn at random
    by_energy = spectra.top_positions(spectra.energy(basis, w0), n // 2)
    assert reach["mixed δ=0.5"]["fraction"] >= spectra.captured_fraction(spectra.energy(basis, delta), by_energy) - 1e-6
    (overlap,) = result.overlap
    assert overlap["jaccard"] == 1.0 and overlap["recall"] == 1.0 and overlap["intersection"] == n


@pytest.mark.parametrize("basis_name", ORTHONORMAL)
def test_gaussian_update_compacts_like_the_gaussian_tail_and_random_positions_reach_their_share(basis_name):
    from scipy import integrate, stats

    basis = get_basis(basis_name)
    shape = _shape_for(basis, (96, 128), (128, 128))
    total = shape[0] * shape[1]
    e = spectra.energy(basis, randn(*shape, seed=7))
    for share in (0.01, 0.1, 0.5):
        k = round(share * total)
        t = stats.norm.isf(share / 2)
        tail = 2 * integrate.quad(lambda g: g * g * stats.norm.pdf(g), t, math.inf)[0]  # E[g²; |g| > t]
        assert spectra.gaussian_topk_fraction(share) == pytest.approx(tail, rel=1e-6)
        assert spectra.compaction_curve(e, [k])[0] == pytest.approx(tail, abs=0.015)
    # a random set of k positions holds k/(MN) of the energy in expectation
    n = total // 10
    draws = [spectra.captured_fraction(e, torch.randperm(total, generator=torch.Generator().manual_seed(s))[:n])
             for s in range(20)]
    assert np.mean(draws) == pytest.approx(n / total, abs=0.005)


@pytest.mark.parametrize("basis_name", ORTHONORMAL)
@given(data=st.data(), seed=seeds)
def test_energy_on_positions_equals_the_least_squares_projection(basis_name, data, seed):
    basis = get_basis(basis_name)
    rows, cols = data.draw(shapes_for(basis, max_side=10))
    n = data.draw(st.integers(1, rows * cols))
    delta = randn(rows, cols, seed=seed)
    positions = torch.randperm(rows * cols, generator=torch.Generator().manual_seed(seed))[:n]
    direct = spectra.projection_fraction(basis, delta, positions)
    assert spectra.captured_fraction(spectra.energy(basis, delta), positions) == pytest.approx(direct, abs=1e-9)


@given(values=st.lists(st.floats(0, 100), min_size=1, max_size=40).filter(lambda v: sum(v) > 0),
       fraction=st.floats(0.01, 1.0))
def test_compaction_and_k_for_fraction_follow_their_definition(values, fraction):
    e = torch.tensor(values, dtype=torch.float64)
    ordered = sorted(values, reverse=True)
    total = sum(values)
    curve = spectra.compaction_curve(e, range(1, len(values) + 1))
    for k in range(1, len(values) + 1):
        assert curve[k - 1] == pytest.approx(sum(ordered[:k]) / total, abs=1e-12)
    (k,) = spectra.k_for_fraction(e, [fraction])
    assert sum(ordered[:k]) / total >= fraction - 1e-9
    assert k == 1 or sum(ordered[: k - 1]) / total < fraction


def test_overlap_counts_sets_and_correlates_ranks():
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    a = torch.rand(200, generator=g, dtype=torch.float64)
    b = a + 0.3 * torch.rand(200, generator=g, dtype=torch.float64)
    result = spectra.overlap(a, b, 20)
    top_a = set(torch.topk(a, 20).indices.tolist())
    top_b = set(torch.topk(b, 20).indices.tolist())
    assert result["intersection"] == len(top_a & top_b)
    assert result["jaccard"] == pytest.approx(len(top_a & top_b) / len(top_a | top_b))
    assert result["jaccard_chance"] == pytest.approx((20 * 20 / 200) / (40 - 20 * 20 / 200))
    assert result["spearman"] == pytest.approx(stats.spearmanr(a, b).statistic)
    assert result["kendall"] == pytest.approx(stats.kendalltau(a, b).statistic)
    same = spectra.overlap(a, a, 20)
    assert same["jaccard"] == 1.0 and same["spearman"] == pytest.approx(1.0)


def test_shapes_a_basis_cannot_take_and_selectors_that_need_more_than_w0_are_skipped_with_a_note():
    @register_selector("needs_calibration_data")
    class NeedsData(Selector):
        def select(self, scores, shape, n, generator):
            raise ValueError("this selector needs calibration batches")

    try:
        odd = "backbone.encoder.layer.0.output.dense"
        w0 = {NAME: randn(16, 24, seed=1).float(), odd: randn(15, 16, seed=2).float()}
        deltas = {k: randn(*v.shape, seed=3).float() for k, v in w0.items()}
        result = analyse_update(w0, deltas, seed=0, config=AnalysisConfig(n_values=[8], deltas=[0.7]))
    finally:
        SELECTORS.unregister("needs_calibration_data")
    assert any("needs_calibration_data" in note and "calibration batches" in note for note in result.notes)
    assert "needs_calibration_data" not in {r["selector"] for r in result.reachable}
    analysed = {(r["basis"], r["layer"]) for r in result.summary}
    for basis_name in list_bases():
        basis = get_basis(basis_name)
        if not basis.orthonormal:
            continue
        assert ((basis_name, odd) in analysed) == supports(basis, (15, 16))
        if not supports(basis, (15, 16)):
            assert any(basis_name in note and odd in note for note in result.notes)
    # every selector that can choose from W0 alone appears; each other one is skipped with a note
    from spectral_peft import SpectralConfig
    from spectral_peft.selection import choose_positions

    def chooses_from_w0(selector):
        layer = torch.nn.Linear(24, 16, bias=False)
        try:
            choose_positions(None, {NAME: layer}, SpectralConfig(basis="dct", selector=selector, n=8))
        except (ValueError, FileNotFoundError):
            return False
        return True

    expected = {s for s in list_selectors() if chooses_from_w0(s)}
    assert {"energy", "random", "mixed"} <= expected
    assert {r["selector"] for r in result.reachable} == expected
    for skipped in set(list_selectors()) - expected:
        assert any(note.startswith(f"selector {skipped}") for note in result.notes)


def test_analysis_is_deterministic_and_rows_are_consistent():
    w0 = {NAME: randn(16, 24, seed=1).float()}
    deltas = {NAME: randn(16, 24, seed=2).float()}
    config = AnalysisConfig(n_values=[8, 40], deltas=[0.0, 0.7])
    first = analyse_update(w0, deltas, 3, config)
    second = analyse_update(w0, deltas, 3, config)
    assert first.reachable == second.reachable and first.summary == second.summary
    for row in first.reachable:
        assert 0 <= row["fraction"] <= row["oracle"] + 1e-12 <= 1 + 1e-12
        assert row["chance"] == row["n"] / (16 * 24)
    gauss = [r for r in first.summary if r["matrix"] == "gaussian"]
    delta_rows = [r for r in first.summary if r["matrix"] == "delta"]
    for g, d in zip(gauss, delta_rows):  # the Gaussian contrast has ΔW's norm
        assert g["energy"] == pytest.approx(d["energy"], rel=1e-9)


def test_a_basis_spec_is_analysed_under_its_spec_like_the_name_with_those_options():
    w0 = {NAME: randn(16, 24, seed=1).float()}
    deltas = {NAME: randn(16, 24, seed=2).float()}
    common = dict(n_values=[8], deltas=[0.7], selectors=["energy", "mixed"])
    by_spec = analyse_update(w0, deltas, 0, AnalysisConfig(bases=["patchwise:dht:8"], **common))
    by_options = analyse_update(w0, deltas, 0, AnalysisConfig(
        bases=["patchwise"], basis_options={"patchwise": {"inner": "dht", "block": 8}}, **common))
    assert {r["basis"] for r in by_spec.summary} == {"patchwise:dht:8"}
    strip = lambda rows: [{k: v for k, v in r.items() if k != "basis"} for r in rows]  # noqa: E731
    assert strip(by_spec.summary) == strip(by_options.summary)
    assert strip(by_spec.reachable) == strip(by_options.reachable)


def test_a_selector_one_basis_refuses_is_still_evaluated_in_the_others():
    """``band`` needs a frequency map: refused for identity, evaluated for the bases after it."""
    w0 = {NAME: randn(16, 24, seed=1).float()}
    deltas = {NAME: randn(16, 24, seed=2).float()}
    bases = ["identity", "dct", "wavelet"]
    result = analyse_update(w0, deltas, 0, AnalysisConfig(bases=bases, n_values=[8], deltas=[0.7], selectors=["band", "random"]))
    with_band = {r["basis"] for r in result.reachable if r["selector"] == "band"}
    assert with_band == {"dct", "wavelet"}
    assert [n for n in result.notes if n.startswith("selector band")] == [
        n for n in result.notes if n.startswith("selector band: skipped for basis identity:")]
