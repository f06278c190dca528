"""Ablation of n, the number of trained coefficients per adapted layer, on a log grid.

    python studies/ablate_n.py                          # quick preset
    python studies/ablate_n.py --preset full --basis dct --selector random
    python studies/ablate_n.py --help

LoRA runs at the rank closest in parameters to each n; head-only training is the lower reference.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from spectral_peft.studies.catalog.ablate_n import STUDY  # noqa: E402
from spectral_peft.studies import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(STUDY))
