"""Turn one run's settings into a fresh model: spectral adapters (through the public
``spectral_peft.inject``), Hugging Face peft LoRA, head-only training, or full fine-tuning."""
from __future__ import annotations

import copy
import re
import time

import torch
from torch import nn

from .model import SentenceClassifier, target_regex
from .train import epoch_batches, seed_everything

__all__ = ["METHODS", "build_model", "calibration_batches", "comparable_lora_rank", "matching_linears",
           "selector_takes_delta"]

CALIBRATION_BATCHES = 8

METHODS = ("spectral", "lora", "head", "full")


def selector_takes_delta(selector: str) -> bool:
    """Whether ``SpectralConfig`` accepts a ``delta`` for this selector (only δ-mixing selectors do)."""
    from spectral_peft import SpectralConfig

    try:
        SpectralConfig(selector=selector, delta=0.5)
        return True
    except ValueError:
        SpectralConfig(selector=selector)  # an unknown selector raises here, with the valid names
        return False


def matching_linears(model: nn.Module, regex: str) -> list[tuple[str, nn.Linear]]:
    pattern = re.compile(regex)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.fullmatch(n)]


def comparable_lora_rank(backbone: nn.Module, layers, modules, n: int) -> int:
    """The LoRA rank whose parameter count per adapted layer, r·(in+out), is closest to ``n``."""
    probe = SentenceClassifier(backbone, 1)
    found = matching_linears(probe, target_regex(layers, modules))
    if not found:
        raise ValueError(f"no linear layer matches layers={list(layers)} modules={list(modules)}")
    per_rank = sum(m.in_features + m.out_features for _, m in found) / len(found)
    return max(1, round(n / per_rank))


def calibration_batches(tokens, labels: torch.Tensor, batch_size: int, seed: int, bucket: int = 16,
                        count: int = CALIBRATION_BATCHES):
    """The first ``count`` training batches of epoch 1 (the same seeded order as training) as a
    :class:`spectral_peft.Calibration` with the classification loss, for data-driven selectors."""
    from spectral_peft import Calibration

    order = epoch_batches(tokens.lengths, batch_size, torch.Generator().manual_seed(seed), bucket)[:count]

    def loss(model, index):
        ids, mask = tokens.batch(index)
        return nn.functional.cross_entropy(model(ids, mask), labels[index])

    return Calibration(order, loss)


def build_model(backbone: nn.Module, num_labels: int, run: dict, seed: int,
                calibration=None) -> tuple[SentenceClassifier, dict]:
    """A fresh classifier on a deep copy of ``backbone`` with ``run['method']`` applied.

    The head and LoRA initialisation follow ``seed``; the spectral random positions follow
    ``run["position_seed"]`` when the run has one (the runner derives it), else ``seed``.
    ``calibration`` (see :func:`calibration_batches`) feeds selectors that choose positions from
    data. Returns the model and counts (parameters; for spectral runs also ``selection_time_s``,
    the seconds spent choosing positions, e.g. the ``learned`` warm-up).
    """
    method = run["method"]
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    seed_everything(seed)
    model = SentenceClassifier(copy.deepcopy(backbone), num_labels)
    targets = target_regex(run["layers"], run["modules"]) if method in ("spectral", "lora") else None
    adapted = 0
    if method == "spectral":
        from spectral_peft import SpectralConfig, inject

        cfg = SpectralConfig(
            basis=run["basis"], basis_options=dict(run.get("basis_options") or {}), selector=run["selector"],
            n=int(run["n"]), delta=None if run.get("delta") is None else float(run["delta"]), alpha=float(run["alpha"]),
            seed=int(run.get("position_seed", seed)),
            target_modules=targets,
        )
        adapted = len(matching_linears(model, targets))
        started = time.perf_counter()
        inject(model, cfg, calibration=calibration if cfg.build_selector().needs_data else None)
        selection_time = time.perf_counter() - started
    elif method == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        adapted = len(matching_linears(model, targets))
        model.requires_grad_(False)
        cfg = LoraConfig(r=int(run["lora_r"]), lora_alpha=float(run["lora_alpha"]), lora_dropout=0.0,
                         target_modules=targets, bias="none")
        model = inject_adapter_in_model(cfg, model)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
    elif method == "head":
        model.requires_grad_(False)
    elif method == "full":
        model.requires_grad_(True)
    model.head.requires_grad_(True)
    head = sum(p.numel() for p in model.head.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counts = {"trainable_params": trainable, "head_params": head, "adapter_params": trainable - head,
              "adapted_modules": adapted}
    if method == "spectral":
        counts["selection_time_s"] = round(selection_time, 3)
    return model, counts
