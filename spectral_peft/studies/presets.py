"""Preset settings. Each CLI option left unset takes its value from the chosen preset.

smoke: tiny random BERT from a config + a generated dataset; seconds; for CI.
quick: all-MiniLM-L6-v2 + TREC, 800-example class-balanced train subset, 3 epochs, adapters on
       query/value of the top two layers (layers 0-3 computed once and cached), 8 seeds: enough
       for the exact sign-flip test to reach Holm significance over a few comparisons
       (smallest p = 2/2^8); the quick δ study (3 values) in under 10 minutes on 2 CPU cores.
full:  same model, dataset and adapter; the whole train split (3 epochs), 48 seeds: the powered
       design. The 36-seed δ study measured a paired standard deviation of about 1.15 points (the
       3-seed pilot had suggested 0.84-0.98), so 36 seeds detect 0.55 points; 48 seeds bring the
       minimum detectable effect (alpha = 0.05, power 0.8) to about 0.47 (studies/README.md).
quick-llm: SmolLM2-135M-Instruct (a decoder) generating TREC's label text after a prompt, adapters
       on q_proj/v_proj of the top two of its 30 blocks (the 28 below computed once and cached),
       a small train subset and 2 epochs so that it stays affordable on 2 CPU cores (learning rates
       not tuned).
Both score the whole test split. Learning rates were tuned briefly on the dev split.
"""
from __future__ import annotations

# Chosen from measurements (dev accuracy, 2000-example train subset, seed 0; see studies/README.md):
# on trec, adapters add ~17 points over head-only training, on banking77 < 1 point.
DEFAULT_DATASET = "trec"

# how α changes with n (methods.effective_alpha): "none" keeps it, "sqrt" gives α·sqrt(n0/n)
ALPHA_SCALINGS = ("none", "sqrt")

_COMMON = dict(
    modules=["query", "value"],
    basis="dht",
    basis_options={},
    selector="mixed",
    delta=0.7,
    alpha=1.0,
    alpha_scaling="none",
    eval_split="test",
    warmup_ratio=0.1,
    weight_decay=0.0,
    max_steps=None,
    references=["head", "lora"],
    data_seed=0,
    threads=1,
    task="classify",
    dtype="float32",
    device="auto",
    executor="local",
)

PRESETS: dict[str, dict] = {
    "smoke": dict(
        _COMMON,
        backbone="tiny-bert",
        dataset="smoke",
        seeds=[0],
        train_size=None,
        eval_size=None,
        max_len=32,
        epochs=10,
        batch_size=16,
        layers=[1],
        n=64,
        lr=3e-1,
        lora_lr=3e-2,
        full_lr=1e-3,
        head_lr=3e-1,
    ),
    "quick": dict(
        _COMMON,
        backbone="all-MiniLM-L6-v2",
        dataset=DEFAULT_DATASET,
        seeds=list(range(8)),
        train_size=800,
        eval_size=None,
        max_len=64,
        epochs=3,
        batch_size=32,
        layers=[4, 5],
        n=768,
        lr=1e-1,
        lora_lr=3e-2,
        full_lr=1e-4,
        head_lr=3e-2,
    ),
    "quick-llm": dict(
        _COMMON,
        backbone="smollm2",
        task="generate",
        dataset=DEFAULT_DATASET,
        seeds=[0],
        train_size=320,
        eval_size=100,
        max_len=32,
        epochs=2,
        batch_size=16,
        layers=[28, 29],
        modules=["q_proj", "v_proj"],
        n=576,
        lr=1e-1,
        lora_lr=1e-2,
        full_lr=1e-5,
        head_lr=0.0,
        references=["lora"],
    ),
}

# full differs from quick only in the seeds and the train split
PRESETS["full"] = dict(PRESETS["quick"], seeds=list(range(48)), train_size=None)
