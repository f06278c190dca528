"""Where the energy of a matrix lies in a basis: compaction curves, energy on a position set,
overlap of two position rankings, and the least-squares projection these shortcuts stand for.

For a matrix X (out × in, M·N entries) and a basis B, the energy of position p is e_p = B(X)_p².
For an orthonormal B (Parseval: Σ_p e_p = ‖X‖²):

    compaction(k) = Σ of the k largest e_p / ‖X‖²            (top-k fraction)
    captured(P)   = Σ_{p ∈ P} e_p / ‖X‖²                      (fraction on a position set P)

and captured(P) is exactly the fraction of ‖X‖² that the best approximation of X in the span of
the atoms {B⁻¹(e_p) : p ∈ P} reaches: the atoms are orthonormal, so the least-squares projection
of X onto their span keeps the coefficients B(X)_p on P and drops the rest.
:func:`projection_fraction` computes that projection directly (any invertible basis), which is
how the tests check the shortcut and how non-orthonormal bases could be treated.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "captured_fraction",
    "compaction_curve",
    "energy",
    "gaussian_topk_fraction",
    "k_for_fraction",
    "log_grid",
    "overlap",
    "projection_fraction",
    "top_positions",
]


def energy(basis, matrix: torch.Tensor) -> torch.Tensor:
    """e = B(X)² per position, flattened row-major (q = u·N + v), float64."""
    return (basis.forward(matrix.detach().to(torch.float64)) ** 2).reshape(-1)


def _sorted_cumulative(e: torch.Tensor) -> np.ndarray:
    total = float(e.sum())
    if not total > 0:
        raise ValueError("the matrix has zero energy; its compaction is undefined")
    return np.cumsum(np.sort(e.numpy())[::-1]) / total


def compaction_curve(e: torch.Tensor, ks) -> np.ndarray:
    """Fraction of the total energy in the k largest entries of ``e``, for each k in ``ks`` (1 <= k <= len(e))."""
    cum = _sorted_cumulative(e)
    ks = np.asarray(list(ks), dtype=np.int64)
    if ks.size and (ks.min() < 1 or ks.max() > cum.size):
        raise ValueError(f"k must lie in [1, {cum.size}], got {ks.min()}..{ks.max()}")
    return cum[ks - 1]


def k_for_fraction(e: torch.Tensor, fractions) -> list[int]:
    """The smallest k whose top-k entries of ``e`` hold at least each given fraction of the energy."""
    cum = _sorted_cumulative(e)
    # tolerance: the cumulative sum of a full vector can end at 1 - 1e-16
    return [int(min(np.searchsorted(cum, f - 1e-12, side="left") + 1, cum.size)) for f in fractions]


def log_grid(total: int, points: int = 48, extra=()) -> list[int]:
    """Integers from 1 to ``total`` spaced evenly on a log scale, plus ``extra`` (those <= total)."""
    grid = np.unique(np.round(np.geomspace(1, total, points)).astype(np.int64))
    return sorted({int(k) for k in grid} | {int(k) for k in extra if 1 <= int(k) <= total})


def top_positions(e: torch.Tensor, n: int) -> torch.Tensor:
    """Flat indices of the n largest entries of ``e`` (ties: lower index first), sorted ascending.

    The same ranking as the ``energy`` selector (:func:`spectral_peft.selectors.top_by_energy`).
    """
    from spectral_peft.selectors import top_by_energy

    return torch.sort(top_by_energy(e, n)).values


def captured_fraction(e: torch.Tensor, positions: torch.Tensor) -> float:
    """Σ_{p ∈ positions} e_p / Σ_p e_p."""
    return float(e[positions.to(torch.long)].sum() / e.sum())


def projection_fraction(basis, matrix: torch.Tensor, positions: torch.Tensor) -> float:
    """‖P X‖² / ‖X‖², P the least-squares projection onto span{B⁻¹(e_p) : p ∈ positions}.

    Built directly: the atoms are the inverse transforms of unit coefficient matrices, and the
    projection is ``scipy.linalg.lstsq`` of vec(X) on them. Dense, so for small matrices only
    (it needs M·N × n numbers).
    """
    import scipy.linalg

    rows, cols = matrix.shape
    positions = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
    units = torch.zeros(positions.numel(), rows * cols, dtype=torch.float64)
    units[torch.arange(positions.numel()), positions] = 1.0
    atoms = basis.inverse(units.reshape(-1, rows, cols)).reshape(positions.numel(), -1).T.numpy()
    target = matrix.detach().to(torch.float64).reshape(-1).numpy()
    solution, *_ = scipy.linalg.lstsq(atoms, target)
    fitted = atoms @ solution
    return float(fitted @ fitted / (target @ target))


def overlap(e_a: torch.Tensor, e_b: torch.Tensor, n: int, rank_correlation: bool = True) -> dict:
    """How well the energy ranking of one matrix predicts another's (same basis, same shape).

    ``jaccard``: |A ∩ B| / |A ∪ B| of the top-n position sets; ``jaccard_chance``: its value for two
    independent uniformly random n-sets (E|A ∩ B| = n²/(MN)); ``recall``: |A ∩ B| / n;
    ``spearman`` and ``kendall``: rank correlations of the two energies over all M·N positions
    (``scipy.stats.spearmanr`` / ``kendalltau``, tau-b), with their p-values.
    """
    from scipy import stats

    total = e_a.numel()
    top_a, top_b = top_positions(e_a, n), top_positions(e_b, n)
    inter = int(np.intersect1d(top_a.numpy(), top_b.numpy()).size)
    expected = n * n / total
    out = {
        "intersection": inter,
        "jaccard": inter / (2 * n - inter),
        "jaccard_chance": expected / (2 * n - expected),
        "recall": inter / n,
        "spearman": math.nan, "spearman_p": math.nan, "kendall": math.nan, "kendall_p": math.nan,
    }
    if rank_correlation:
        rho = stats.spearmanr(e_a.numpy(), e_b.numpy())
        tau = stats.kendalltau(e_a.numpy(), e_b.numpy())
        out.update(spearman=float(rho.statistic), spearman_p=float(rho.pvalue),
                   kendall=float(tau.statistic), kendall_p=float(tau.pvalue))
    return out


def gaussian_topk_fraction(share: float) -> float:
    """Expected energy fraction in the top ``share`` of the entries of an i.i.d. Gaussian matrix.

    An orthonormal basis maps an i.i.d. N(0, σ²) matrix to i.i.d. N(0, σ²) coefficients, so in
    every orthonormal basis, as M·N → ∞, the top q = k/(MN) of the energies g² hold

        E[g²; |g| > t] / E[g²] = q + 2·t·φ(t),   t = Φ⁻¹(1 − q/2)

    of the energy (φ, Φ: standard normal density and distribution). This is above q: the largest
    of many equal-variance coefficients are large by chance. A random set of k positions holds q.
    """
    from scipy import stats

    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    if share == 0.0:
        return 0.0
    t = stats.norm.isf(share / 2)
    return float(min(1.0, share + 2 * t * stats.norm.pdf(t))) if math.isfinite(t) else 1.0
