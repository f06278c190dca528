"""One combined table (markdown + LaTeX) and figure from any number of study folders.

    python studies/report.py docs/results/ablate_delta_full docs/results/ablate_basis_full --out paper/
    python studies/report.py --help
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from spectral_peft.studies.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
