"""Statistics for studies whose replication unit is the seed.

Runs that share a seed share the data subset, the data order and the random draws, so two
configurations are compared *paired by seed*: for seeds s = 1..k the differences
d_s = a_s − b_s are the data. Everything here works on plain arrays (in whatever unit the caller
uses; the studies use accuracy points, 0–100).

- :func:`describe`: mean, 95 % bootstrap CI of the mean (``scipy.stats.bootstrap``, BCa), standard
  deviation, and the interquartile mean IQM = mean of the middle 50 % (``scipy.stats.trim_mean``
  with 25 % cut each side) when there are at least 5 values.
- :func:`compare`: the paired comparison of two configurations: mean difference d̄ with its
  bootstrap CI, the exact sign-flip permutation test (``scipy.stats.permutation_test``), the
  probability of improvement P(a > b) = (#{d_s > 0} + ½·#{d_s = 0}) / k, the TOST equivalence test
  at ±margin and the minimum detectable effect of the design.
- :func:`holm`: Holm's step-down adjustment of a family of p-values.
- :func:`minimum_detectable_effect`: the smallest true mean difference a two-sided paired test
  at level α detects with the given power, from the paired standard deviation σ_d and k seeds.

The sign-flip test: under H0 (no difference) each d_s is symmetric around 0, so flipping the
signs of any subset leaves its distribution unchanged. The p-value is the share of the 2^k sign
patterns whose |mean| is at least the observed |d̄| (exact for k ≤ 16, 65 536 random patterns
above). Its smallest attainable p-value is 2 / 2^k: with 5 or fewer seeds it can never reach
p < 0.05, which :func:`smallest_p` makes explicit.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

__all__ = [
    "Comparison",
    "Description",
    "bootstrap_ci",
    "compare",
    "describe",
    "equivalence_test",
    "holm",
    "minimum_detectable_effect",
    "probability_of_improvement",
    "seeds_for_effect",
    "sign_flip_test",
    "smallest_p",
]

EXACT_LIMIT = 16  # up to 2^16 sign patterns are enumerated; above, 2^16 random patterns


def _array(values) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def bootstrap_ci(values, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> tuple[float, float]:
    """Bootstrap CI of the mean (BCa; percentile when BCa is undefined, e.g. all values equal).

    Fewer than 2 values: (nan, nan): one value has no spread to resample.
    """
    x = _array(values)
    if len(x) < 2:
        return math.nan, math.nan
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa warns (and returns nan) on degenerate jackknives
            res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                                  method=method, vectorized=True, random_state=np.random.default_rng(seed))
        low, high = res.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
    return math.nan, math.nan


@dataclass(frozen=True)
class Description:
    n: int
    mean: float
    ci_low: float
    ci_high: float
    std: float
    iqm: float  # nan below 5 values


def describe(values, confidence: float = 0.95, seed: int = 0) -> Description:
    """Mean, bootstrap CI of the mean, std (ddof = 1) and IQM (≥ 5 values) of ``values``."""
    x = _array(values)
    n = len(x)
    low, high = bootstrap_ci(x, confidence, seed=seed)
    return Description(
        n=n,
        mean=float(x.mean()) if n else math.nan,
        ci_low=low,
        ci_high=high,
        std=float(x.std(ddof=1)) if n > 1 else math.nan,
        iqm=float(stats.trim_mean(x, 0.25)) if n >= 5 else math.nan,
    )


def smallest_p(k: int) -> float:
    """The smallest two-sided p-value an exact sign-flip test on k pairs can return: 2 / 2^k."""
    return min(1.0, 2.0 / 2.0**k) if k > 0 else 1.0


def sign_flip_test(differences, seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip permutation test on the mean difference."""
    d = _array(differences)
    if len(d) == 0:
        return math.nan
    if len(d) == 1 or not np.any(d):  # one pair: both sign patterns give the same |mean|
        return 1.0
    exact = len(d) <= EXACT_LIMIT
    res = stats.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", vectorized=True,
        n_resamples=np.inf if exact else 2**EXACT_LIMIT, alternative="two-sided",
        random_state=np.random.default_rng(seed))
    return float(min(1.0, res.pvalue))


def probability_of_improvement(differences) -> float:
    """P(a > b) over paired seeds: (#{d > 0} + ½·#{d = 0}) / k."""
    d = _array(differences)
    if len(d) == 0:
        return math.nan
    return float((np.sum(d > 0) + 0.5 * np.sum(d == 0)) / len(d))


def equivalence_test(differences, margin: float) -> float:
    """TOST p-value for |true mean difference| < ``margin`` (two one-sided paired t-tests).

    p = max(p of H0: μ ≤ −margin, p of H0: μ ≥ +margin); p < α claims equivalence at level α
    (the same as the (1 − 2α) t-interval lying inside ±margin).
    """
    d = _array(differences)
    if len(d) < 2 or margin <= 0:
        return math.nan
    if np.ptp(d) == 0:  # no spread: the t statistic is infinite
        return 0.0 if abs(d[0]) < margin else 1.0
    lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(lower, upper))


def _power(effect: float, sd: float, k: int, alpha: float) -> float:
    df = k - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(k) / sd
    power = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    if not np.isfinite(power):  # scipy's noncentral t fails for large df; the normal limit is exact there
        power = stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc)
    return float(power)


def minimum_detectable_effect(sd: float, k: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean paired difference δ detected with probability ``power`` by a two-sided
    paired t-test at level ``alpha`` with k pairs of standard deviation ``sd``.

    Solves P(|T| > t_{1−α/2, k−1}) = power for T ~ noncentral t(k − 1, δ·√k / sd). For large k
    this tends to (z_{1−α/2} + z_power)·sd/√k. The sign-flip test has about the same power once
    k ≥ 8 or so; below, its attainable p-values are coarser (see :func:`smallest_p`).
    """
    if k < 2 or not np.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    hi = sd
    while _power(hi, sd, k, alpha) < power:
        hi *= 2
    return float(optimize.brentq(lambda e: _power(e, sd, k, alpha) - power, 0.0, hi, xtol=1e-10 * sd))


def seeds_for_effect(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8, max_seeds: int = 10_000) -> int:
    """The fewest seeds whose :func:`minimum_detectable_effect` is at most ``effect``."""
    k = 2
    while k <= max_seeds:
        if minimum_detectable_effect(sd, k, alpha, power) <= effect:
            return k
        k += 1
    raise ValueError(f"more than {max_seeds} seeds needed for an effect of {effect} at sd {sd}")


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error rate control); nan entries stay nan.

    Sorted ascending p_(1) ≤ … ≤ p_(m): p̃_(i) = min(1, max_{j ≤ i} (m − j + 1)·p_(j)).
    (Written out because scipy has Benjamini–Hochberg but not Holm, and statsmodels would be a
    large dependency for these four lines; the tests check it against the definition and its
    family-wise error rate by simulation.)
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


@dataclass(frozen=True)
class Comparison:
    """Paired comparison a − b over the seeds both have."""

    pairs: int
    diff: float
    diff_ci_low: float
    diff_ci_high: float
    diff_sd: float
    p: float  # sign-flip permutation test, two-sided, unadjusted
    prob_improvement: float
    tost_p: float
    mde: float

    def as_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}


def compare(a: dict, b: dict, margin: float = 0.5, alpha: float = 0.05, power: float = 0.8,
            confidence: float = 0.95, seed: int = 0) -> Comparison:
    """Compare ``a`` and ``b``, each a mapping seed -> value, paired on their common seeds."""
    common = sorted(set(a) & set(b))
    d = _array([a[s] - b[s] for s in common])
    k = len(d)
    sd = float(d.std(ddof=1)) if k > 1 else math.nan
    low, high = bootstrap_ci(d, confidence, seed=seed)
    return Comparison(
        pairs=k,
        diff=float(d.mean()) if k else math.nan,
        diff_ci_low=low,
        diff_ci_high=high,
        diff_sd=sd,
        p=sign_flip_test(d, seed=seed),
        prob_improvement=probability_of_improvement(d),
        tost_p=equivalence_test(d, margin),
        mde=minimum_detectable_effect(sd, k, alpha, power),
    )
