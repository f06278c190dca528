"""Ablation of δ, the share of adapter positions chosen by energy (the rest uniformly at random).

    python studies/ablate_delta.py                      # quick preset: δ = 0, 0.7, 1, 8 seeds, < 10 minutes
    python studies/ablate_delta.py --preset full        # δ = 0, 0.7, 1, 48 seeds, whole train split (hours)
    python studies/ablate_delta.py --preset full --values 0,0.1,0.3,0.5,0.7,0.9,1   # the δ curve (2.3x longer)
    python studies/ablate_delta.py --help

δ = 0 is the random selector, δ = 1 the energy selector; SSH recommends δ = 0.7.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from spectral_peft.studies.catalog.ablate_delta import STUDY  # noqa: E402
from spectral_peft.studies import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(STUDY))
