"""Where does a fine-tuning update live? Real updates ΔW seen through every basis and selector.

    python studies/analyze_update.py                      # quick preset (MiniLM + TREC, 1 seed)
    python studies/analyze_update.py --preset full        # 3 seeds, whole train split
    python studies/analyze_update.py --accuracy-from docs/results/ablate_basis_full docs/results/ablate_delta_full
    python studies/analyze_update.py --help
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from spectral_peft.studies.update_analysis.command import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
