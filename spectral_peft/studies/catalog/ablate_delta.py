"""Ablation of δ, the share of adapter positions chosen by energy (the rest uniformly at random).

    python studies/ablate_delta.py                      # quick preset: δ = 0, 0.7, 1, 8 seeds, < 10 minutes
    python studies/ablate_delta.py --preset full        # δ = 0, 0.7, 1, 48 seeds, whole train split (hours)
    python studies/ablate_delta.py --preset full --values 0,0.1,0.3,0.5,0.7,0.9,1   # the δ curve (2.3x longer)
    python studies/ablate_delta.py --help

δ = 0 is the random selector, δ = 1 the energy selector; SSH recommends δ = 0.7.
"""
from __future__ import annotations

from ..runner import Study

STUDY = Study(
    name="ablate_delta",
    title="Mixed selector: energy share δ",
    axis="delta",
    axis_label="δ (share of the n positions chosen by energy of B(W0); the rest at random)",
    description=__doc__,
    # the two ends and SSH's recommendation: 8 quick seeds fit in 10 minutes, and the powered full
    # design (48 seeds) in about 2.5 h with two workers; the finer curve is --values 0,0.1,...,1
    grids={"smoke": [0.0, 0.5, 1.0], "quick": [0.0, 0.7, 1.0], "full": [0.0, 0.7, 1.0]},
    fixed={"selector": "mixed"},
    baseline="delta=0",  # δ = 0: every position at random
)
