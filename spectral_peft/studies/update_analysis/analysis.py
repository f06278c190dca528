"""The analysis of one set of updates: for every registered basis and target layer, where the
energy of ΔW lies (against W0 and a Gaussian matrix of ΔW's shape and norm), how much of it the
positions each selector picks from W0 can reach, and whether W0's energy ranking predicts ΔW's.

Only tensors go in (W0 and ΔW per layer name) and plain rows come out, so the analysis reruns on
stored updates without a model. Bases come from :func:`spectral_peft.list_bases`, selectors from
:func:`spectral_peft.list_selectors`; positions are chosen by :func:`spectral_peft.selection.choose_positions`,
the very call :func:`spectral_peft.inject` makes, so they are the positions a trained adapter with
the same seed gets.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from . import spectra

__all__ = ["AnalysisConfig", "AnalysisResult", "analyse_update", "layer_block", "layer_kind", "selector_settings"]

FRACTIONS = (0.5, 0.9)


@dataclass
class AnalysisConfig:
    n_values: list[int]
    deltas: list[float]  # δ grid of the selectors that take one
    bases: list[str] | None = None  # None: every registered basis
    selectors: list[str] | None = None  # None: every registered selector
    basis_options: dict = field(default_factory=dict)  # basis name -> its options
    grid_points: int = 48  # points of the log k grid of the compaction curves
    rank_correlation: bool = True  # Spearman and Kendall over all positions (Kendall is the slow part)

    def as_dict(self) -> dict:
        from spectral_peft import list_bases, list_selectors

        return {"n_values": list(self.n_values), "deltas": list(self.deltas),
                "bases": list(self.bases or list_bases()), "selectors": list(self.selectors or list_selectors()),
                "basis_options": self.basis_options, "grid_points": self.grid_points,
                "rank_correlation": self.rank_correlation}


@dataclass
class AnalysisResult:
    compaction: list[dict] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    reachable: list[dict] = field(default_factory=list)
    overlap: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def layer_block(name: str) -> int | None:
    """The transformer block index in a module name (the first ``.<digits>.``), or None."""
    m = re.search(r"\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def layer_kind(name: str) -> str:
    """The module's name inside its block, e.g. ``attention.self.query`` (its type across blocks)."""
    m = re.search(r"\.\d+\.(.+)$", name)
    return m.group(1) if m else name


def selector_settings(names, deltas) -> list[tuple[str, float | None]]:
    """(selector, δ) pairs: a selector that takes δ once per δ of the grid, the others once with None."""
    from ..methods import selector_takes_delta

    out = []
    for name in names:
        if selector_takes_delta(name):
            out.extend((name, float(d)) for d in deltas)
        else:
            out.append((name, None))
    return out


def selector_label(selector: str, delta: float | None) -> str:
    return selector if delta is None else f"{selector} δ={delta:g}"


def _gaussian_like(delta: torch.Tensor, seed: int, name: str) -> torch.Tensor:
    from spectral_peft.selection import layer_seed

    gen = torch.Generator().manual_seed(layer_seed(seed, f"gaussian:{name}"))
    g = torch.randn(delta.shape, generator=gen, dtype=torch.float64)
    return g * (delta.double().norm() / g.norm())


def _as_linear(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def analyse_update(w0: dict[str, torch.Tensor], deltas: dict[str, torch.Tensor], seed: int,
                   config: AnalysisConfig) -> AnalysisResult:
    """Every measurement for one update (one source and seed); see the module docstring.

    ``w0`` and ``deltas`` map the same layer names to out × in tensors. ``seed`` seeds the random
    selectors exactly as :func:`spectral_peft.inject` would (per layer, from the layer name) and the
    Gaussian contrast. Matrices: ``delta`` (ΔW), ``w0``, ``gaussian`` (ΔW's shape and norm).
    """
    from spectral_peft import SpectralConfig, get_basis, list_bases, list_selectors
    from spectral_peft.selection import choose_positions

    if set(w0) != set(deltas):
        raise ValueError(f"W0 and ΔW name different layers: {sorted(set(w0) ^ set(deltas))}")
    for name in deltas:
        if tuple(w0[name].shape) != tuple(deltas[name].shape):
            raise ValueError(f"{name}: W0 is {tuple(w0[name].shape)} but ΔW is {tuple(deltas[name].shape)}")
    result = AnalysisResult()
    bases = list(config.bases or list_bases())
    settings = selector_settings(config.selectors or list_selectors(), config.deltas)
    refusals: dict[tuple, list[str]] = {}  # (selector label, error) -> the bases it was refused for
    names = sorted(deltas, key=lambda n: (layer_kind(n), layer_block(n) or 0, n))
    gaussians = {name: _gaussian_like(deltas[name], seed, name) for name in names}

    for basis_name in bases:
        options = dict(config.basis_options.get(basis_name, {}))
        basis = get_basis(basis_name, **options)
        if not getattr(basis, "orthonormal", True):
            result.notes.append(f"basis {basis_name}: not orthonormal, so coefficient energy is not the energy "
                                "a least-squares fit on those positions reaches; skipped")
            continue
        usable, refused = [], {}
        for name in names:
            try:
                basis.check_shape(*deltas[name].shape)
                usable.append(name)
            except ValueError as err:
                refused.setdefault(str(err), []).append(f"{name} {tuple(deltas[name].shape)}")
        for reason, layers in refused.items():  # one note per reason, not one per layer
            result.notes.append(f"basis {basis_name}: {len(layers)} layer(s) skipped ({reason}): {', '.join(layers)}")
        if not usable:
            continue
        targets = {name: _as_linear(w0[name]) for name in usable}
        chosen: dict[tuple, dict[str, torch.Tensor]] = {}
        for n in config.n_values:
            for selector, delta in settings:
                try:
                    cfg = SpectralConfig(basis=basis_name, basis_options=options, selector=selector, delta=delta,
                                         n=int(n), seed=int(seed))
                    # no model and no calibration data: selectors that need them raise and are skipped below
                    chosen[(n, selector, delta)] = choose_positions(None, targets, cfg)
                except Exception as err:  # needs more than W0 (data, a stored update), or more than this basis has
                    bases_refused = refusals.setdefault((selector_label(selector, delta), f"{type(err).__name__}: {err}"), [])
                    if basis_name not in bases_refused:
                        bases_refused.append(basis_name)

        for name in usable:
            rows, cols = deltas[name].shape
            total = rows * cols
            where = {"layer": name, "module": layer_kind(name), "block": layer_block(name), "rows": rows,
                     "cols": cols, "basis": basis_name}
            energies = {"delta": spectra.energy(basis, deltas[name]), "w0": spectra.energy(basis, w0[name]),
                        "gaussian": spectra.energy(basis, gaussians[name])}
            grid = spectra.log_grid(total, config.grid_points, extra=config.n_values)
            for matrix, e in energies.items():
                curve = spectra.compaction_curve(e, grid)
                result.compaction.extend(
                    dict(where, matrix=matrix, k=k, share=k / total, fraction=float(f)) for k, f in zip(grid, curve))
                k50, k90 = spectra.k_for_fraction(e, FRACTIONS)
                at_n = spectra.compaction_curve(e, config.n_values)
                for n, f in zip(config.n_values, at_n):
                    result.summary.append(dict(
                        where, matrix=matrix, energy=float(e.sum()), n=n, fraction_at_n=float(f),
                        gaussian_expected_at_n=spectra.gaussian_topk_fraction(n / total),
                        k50=k50, k90=k90, k50_share=k50 / total, k90_share=k90 / total))
            e_delta = energies["delta"]
            for n in config.n_values:
                oracle = float(spectra.compaction_curve(e_delta, [n])[0])
                for (n_sel, selector, delta), positions in chosen.items():
                    if n_sel != n:
                        continue
                    fraction = spectra.captured_fraction(e_delta, positions[name])
                    result.reachable.append(dict(
                        where, n=n, selector=selector, delta=delta, label=selector_label(selector, delta),
                        fraction=fraction, oracle=oracle, of_oracle=fraction / oracle, chance=n / total))
                result.overlap.append(dict(where, n=n, **spectra.overlap(energies["w0"], e_delta, n, config.rank_correlation)))
    for (label, error), refused in refusals.items():
        where = "every basis" if set(refused) >= set(bases) else "basis " + ", ".join(refused)
        result.notes.append(f"selector {label}: skipped for {where}: it cannot choose from W0 alone there ({error})")
    return result

