"""A factorial sweep: the cross product of any adapter axes, with the same harness, outputs and
resume as the named studies (which are one-axis grids of it), per-axis marginal tables and an
interaction plot.

    python studies/sweep.py --grid basis=dht,dct,wavelet selector=energy,random,mixed n=256,1024 delta=0.7
    python studies/sweep.py --preset smoke
    python studies/sweep.py --grid basis=dht,dct selector=random,mixed --baseline selector=random --seeds 0 1 2

Axes: basis, selector, n, delta, alpha. δ is dropped for selectors that take none (random, energy),
so those points run once, not once per δ. --basis-options maps a basis name to its options when
basis is a grid axis, e.g. '{"wavelet": {"wavelet": "db2"}}'.
"""
from __future__ import annotations

from ..runner import Study


class SweepStudy(Study):
    def basis_options_for(self, cfg, basis):
        options = dict(cfg.get("basis_options") or {})
        if "basis" in cfg.get("grid", {}):  # per basis, as in the basis ablation
            return dict(options.get(basis, {}))
        return options


STUDY = SweepStudy(
    name="sweep",
    title="Factorial sweep",
    axis=None,
    axis_label="",
    description=__doc__,
    grids={
        "smoke": {"basis": ["dht", "dct"], "selector": ["energy", "random", "mixed"]},
        "quick": {"basis": ["dht", "dct", "wavelet"], "selector": ["energy", "random", "mixed"], "n": [256, 1024]},
        "full": {"basis": ["dht", "dct", "wavelet"], "selector": ["energy", "random", "mixed"], "n": [256, 1024]},
    },
    categorical=True,
    sweep=True,
    baseline="selector=random",
    basis_options_help="options of the basis as JSON; when basis is a grid axis, a mapping from basis name to "
    'its options, e.g. \'{"wavelet": {"wavelet": "db2"}}\'',
)
