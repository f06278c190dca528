"""Ablation of the selection rule: energy, random, mixed δ, gradient, learned, band (and oracle
with a stored update) at the same basis and n, with LoRA and head-only training as references.

    python studies/ablate_selector.py                   # quick preset
    python studies/ablate_selector.py --preset full
    python studies/ablate_selector.py --values energy,learned,oracle:results/updates.safetensors
    python studies/ablate_selector.py --help
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from spectral_peft.studies.catalog.ablate_selector import STUDY  # noqa: E402
from spectral_peft.studies import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(STUDY))
