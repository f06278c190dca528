"""Ablation of the basis: every registered basis (spectral_peft.list_bases()) at the same n and
the same selection rule, with Hugging Face peft LoRA at a comparable parameter count and
head-only training as references.

    python studies/ablate_basis.py                      # quick preset
    python studies/ablate_basis.py --preset full
    python studies/ablate_basis.py --values dht,dct,identity --selector random
    python studies/ablate_basis.py --values dct,patchwise:dct:64,patchwise:dct:8:3,patchwise:wht:128
    python studies/ablate_basis.py --help

A value is a basis name or a spec ``name:arg:arg…`` giving the basis's constructor arguments in
order (see spectral_peft.registry): ``patchwise:dct:64`` is the DCT per 64×64 block,
``patchwise:dct:8:3`` the hierarchical patchwise basis (8×8 blocks, then 8×8 blocks of their means,
then one global DCT of those), ``patchwise:wht:128`` the Walsh–Hadamard transform per 128×128
block, ``wht:natural`` the WHT in natural order, ``wavelet:db2`` another wavelet family.
"""
from __future__ import annotations

from ..runner import Study


# the hidden size of each backbone: a basis enters the default grid if its defaults transform
# a hidden × hidden layer (e.g. wht needs powers of two: not MiniLM's 384), plus patchwise specs
HIDDEN = {"tiny-bert": 32, "all-MiniLM-L6-v2": 384}
PATCHWISE = {32: ["patchwise:dct:8", "patchwise:dct:4:2", "patchwise:wht:16"],
             384: ["patchwise:dct:64", "patchwise:dct:8:3", "patchwise:wht:128"]}


def registered_bases(cfg):
    """every basis in spectral_peft.list_bases() whose defaults fit the backbone's hidden size, plus
    patchwise specs (MiniLM: patchwise:dct:64, patchwise:dct:8:3, patchwise:wht:128)"""
    from spectral_peft import get_basis, list_bases

    from ..presets import PRESETS

    hidden = HIDDEN.get(cfg.get("backbone") or PRESETS[cfg["preset"]]["backbone"], 384)

    return [name for name in list_bases() if get_basis(name).shape_error(hidden, hidden) is None] + PATCHWISE.get(hidden, [])


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
