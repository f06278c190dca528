"""Ablation of the basis: every registered basis (spectral_peft.list_bases()) at the same n and
the same selection rule, with Hugging Face peft LoRA at a comparable parameter count and
head-only training as references.

    python studies/ablate_basis.py                      # quick preset
    python studies/ablate_basis.py --preset full
    python studies/ablate_basis.py --values dht,dct,identity --selector random
    python studies/ablate_basis.py --help
"""
from __future__ import annotations

from ..runner import Study


def registered_bases(cfg):
    """every basis in spectral_peft.list_bases()"""
    from spectral_peft import list_bases

    return list(list_bases())


class BasisStudy(Study):
    def basis_options_for(self, cfg, basis):
        # --basis-options maps a basis name to its options here, e.g. '{"wavelet": {"wavelet": "db2"}}'
        return dict((cfg.get("basis_options") or {}).get(basis, {}))


STUDY = BasisStudy(
    name="ablate_basis",
    title="Basis at equal n and selection rule",
    axis="basis",
    axis_label="basis",
    description=__doc__,
    grids=registered_bases,
    axis_type=str,
    categorical=True,
    baseline="basis=dht",
    basis_options_help='options per basis as JSON mapping a basis name to its options, e.g. '
    '\'{"wavelet": {"wavelet": "db2"}}\' (default: each basis\'s defaults)',
)
