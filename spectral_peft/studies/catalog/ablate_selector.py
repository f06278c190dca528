"""Ablation of the selection rule: which n positions train, at the same basis and n.

    python studies/ablate_selector.py                   # quick preset
    python studies/ablate_selector.py --preset full
    python studies/ablate_selector.py --values energy,random,mixed:0.7,oracle:results/updates.safetensors
    python studies/ablate_selector.py --help

A value is a selector name or a spec ``name:arg:arg…`` with the selector's constructor arguments in
order: ``mixed:0.7`` (δ = 0.7), ``band:low`` / ``band:high``, ``learned:100`` (100 warm-up steps),
``gradient:4`` (4 calibration batches), ``oracle:PATH`` (top-n of a stored update ΔW, the
safetensors file studies/analyze_update.py writes, typically from another seed). Data-driven
selectors (gradient, learned) get the run's first 8 training batches (its data order) as calibration;
what choosing costs is measured by benchmarks/selection_cost.py (results.csv holds no timings).

The baseline is ``random``. The quick preset runs 10 seeds here, not 8: with seven comparisons against
the baseline, the exact sign-flip test's smallest p-value 2/2^k must stay below 0.05/7 under Holm,
which needs k >= 9 seeds (with 8 even a difference on every seed gives Holm p = 0.055).
"""
from __future__ import annotations

from ..runner import Study

GRID = ["energy", "random", "mixed:0.7", "gradient", "learned", "band:low", "band:high"]

STUDY = Study(
    name="ablate_selector",
    title="Selection rule at equal basis and n",
    axis="selector",
    axis_label="selector",
    description=__doc__,
    grids={"smoke": GRID, "quick": GRID, "full": GRID},
    axis_type=str,
    categorical=True,
    fixed={"delta": None},  # a δ comes with the spec (mixed:0.7), not from --delta
    baseline="selector=random",
    preset_overrides={"quick": {"seeds": list(range(10))}},
)
