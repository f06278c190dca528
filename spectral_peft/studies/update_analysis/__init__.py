"""Where does a fine-tuning update live? Real updates ΔW of a model's layers, seen through every
registered basis and selector (``studies/analyze_update.py``, ``spectral-peft analyze-update``).

updates.py    train the target layers (full fine-tuning of those layers, LoRA at a high rank),
              store ΔW as safetensors (the storage contract other tools read)
spectra.py    the math: compaction curves, energy on a position set, overlap, least-squares check
analysis.py   every basis × layer × selector for one update, as rows
csvio.py      the CSV tables, written atomically, resumable per update
loop.py       reachable energy beside the accuracy of trained adapters from ablation folders
report.py     plots and results.md
command.py    presets, command line, manifest, resume
"""
from .analysis import AnalysisConfig, AnalysisResult, analyse_update
from .updates import SOURCES, load_updates, save_updates, update_path

__all__ = ["SOURCES", "AnalysisConfig", "AnalysisResult", "analyse_update", "load_updates", "save_updates",
           "update_path"]
