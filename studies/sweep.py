"""A factorial sweep over adapter axes (basis, selector, n, delta, alpha) with paired statistics.

    python studies/sweep.py --grid basis=dht,dct,wavelet selector=energy,random,mixed n=256,1024 delta=0.7
    python studies/sweep.py --help
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from spectral_peft.studies.catalog.sweep import STUDY  # noqa: E402
from spectral_peft.studies import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(STUDY))
