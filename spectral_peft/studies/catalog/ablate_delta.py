"""Ablation of δ, the share of adapter positions chosen by energy (the rest uniformly at random).

    python studies/ablate_delta.py                      # quick preset: δ = 0, 0.7, 1, 8 seeds, < 10 minutes
    python studies/ablate_delta.py --preset full        # 7 δ, 36 seeds, whole train and test split (hours)
    python studies/ablate_delta.py --help

δ = 0 is the random selector, δ = 1 the energy selector; SSH recommends δ = 0.7.
"""
from __future__ import annotations

from ..runner import Study

GRID = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]

STUDY = Study(
    name="ablate_delta",
    title="Mixed selector: energy share δ",
    axis="delta",
    axis_label="δ (share of the n positions chosen by energy of B(W0); the rest at random)",
    description=__doc__,
    # quick: the two ends and SSH's recommendation, so that 8 seeds fit in 10 minutes
    grids={"smoke": [0.0, 0.5, 1.0], "quick": [0.0, 0.7, 1.0], "full": GRID},
    fixed={"selector": "mixed"},
    baseline="delta=0",  # δ = 0: every position at random
)
