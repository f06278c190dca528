"""Ablation of the basis: every registered basis (spectral_peft.list_bases()) at the same n and
the same selection rule, with Hugging Face peft LoRA at a comparable parameter count and
head-only training as references.

    python studies/ablate_basis.py                      # quick preset
    python studies/ablate_basis.py --preset full
    python studies/ablate_basis.py --values dht,dct,identity --selector random
    python studies/ablate_basis.py --help
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from spectral_peft.studies.catalog.ablate_basis import STUDY  # noqa: E402
from spectral_peft.studies import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(STUDY))
