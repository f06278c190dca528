"""Ablation of δ, the share of adapter positions chosen by energy (the rest uniformly at random).

    python studies/ablate_delta.py                      # quick preset, a few minutes on 2 CPU cores
    python studies/ablate_delta.py --preset full        # 3 seeds, whole train and test split
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
    grids={"smoke": [0.0, 0.5, 1.0], "quick": GRID, "full": GRID},
    fixed={"selector": "mixed"},
)
