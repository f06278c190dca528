"""Ablation of n, the number of trained coefficients per adapted layer, on a log grid.

    python studies/ablate_n.py                          # quick preset
    python studies/ablate_n.py --preset full --basis dct --selector random
    python studies/ablate_n.py --help

LoRA runs once per distinct rank: for each n, the rank whose parameter count is closest to n
(each point is compared with its own LoRA at equal parameters); head-only training is the lower
reference. The baseline of the paired comparisons is the first n of the grid.
"""
from __future__ import annotations

from ..runner import Study

STUDY = Study(
    name="ablate_n",
    title="Coefficients per layer n",
    axis="n",
    axis_label="n (trained coefficients per adapted layer, log scale)",
    description=__doc__,
    grids={
        "smoke": [16, 64, 256],
        "quick": [48, 192, 768, 3072, 12288],
        "full": [24, 48, 96, 192, 384, 768, 1536, 3072, 6144, 12288],
    },
    axis_type=int,
    log_x=True,
)
