"""Turn one run's settings into a fresh model: spectral adapters (through the public
``spectral_peft.inject``), Hugging Face peft LoRA, head-only training, or full fine-tuning."""
from __future__ import annotations

import copy
import math
import re

import torch
from torch import nn

from .model import Backbone, TaskModel, model_kind, resolve_targets
from .train import epoch_batches, seed_everything

__all__ = ["METHODS", "build_model", "calibration_batches", "comparable_lora_rank", "effective_alpha",
           "matching_linears", "selector_takes_delta"]

CALIBRATION_BATCHES = 8

METHODS = ("spectral", "lora", "head", "full")


def effective_alpha(run: dict) -> float:
    """The α a spectral run trains with: its ``alpha`` under its ``alpha_scaling``.

    ``none`` (or empty: rows from before the column existed): α. ``sqrt:<n0>``: α·√(n0/n). With
    zero-initialised coefficients and Adam every coefficient moves by about lr per step whatever its
    gradient, so one step changes ΔW = α·B⁻¹(S) by about α·lr·√n in Frobenius norm (orthonormal
    basis, independent signs); ``sqrt`` keeps that step the same for every n.
    """
    alpha = float(run["alpha"])
    rule, _, n0 = str(run.get("alpha_scaling") or "none").partition(":")
    if rule == "none":
        return alpha
    if rule == "sqrt" and n0.isdigit():
        return alpha * math.sqrt(int(n0) / int(run["n"]))
    raise ValueError(f"unknown alpha_scaling {run.get('alpha_scaling')!r}: expected 'none' or 'sqrt:<n0>'")


def selector_takes_delta(selector: str) -> bool:
    """Whether ``SpectralConfig`` accepts a ``delta`` for this selector (only δ-mixing selectors do)."""
    from spectral_peft import SpectralConfig

    try:
        SpectralConfig(selector=selector, delta=0.5)
        return True
    except ValueError:
        SpectralConfig(selector=selector)  # an unknown selector raises here, with the valid names
        return False


def matching_linears(model: nn.Module, regex: str) -> list[tuple[str, nn.Module]]:
    """``nn.Linear`` and GPT-2 ``Conv1D`` layers whose full name matches ``regex``."""
    from spectral_peft.adapter import is_conv1d

    pattern = re.compile(regex)
    return [(n, m) for n, m in model.named_modules()
            if (isinstance(m, nn.Linear) or is_conv1d(m)) and pattern.fullmatch(n)]


def _task_model(backbone, num_labels: int, task: str, copy_weights: bool = False) -> TaskModel:
    module = backbone.model if isinstance(backbone, Backbone) else backbone
    kind = backbone.kind if isinstance(backbone, Backbone) else model_kind(module.config)
    return TaskModel(copy.deepcopy(module) if copy_weights else module, num_labels, kind=kind, task=task)


def _targets(model: TaskModel, layers, modules) -> str:
    base_name = next(n for n, m in model.named_modules() if m is model.base)
    return resolve_targets(model.base, layers, modules, prefix=f"{base_name}.")


def comparable_lora_rank(backbone, layers, modules, n: int, task: str = "classify") -> int:
    """The LoRA rank whose parameter count per adapted layer, r·(in+out), is closest to ``n``."""
    from spectral_peft.adapter import linear_weight_shape

    probe = _task_model(backbone, 1, task)
    found = matching_linears(probe, _targets(probe, layers, modules))
    per_rank = sum(sum(linear_weight_shape(m)) for _, m in found) / len(found)
    return max(1, round(n / per_rank))


def calibration_batches(tokens, labels: torch.Tensor, batch_size: int, seed: int, bucket: int = 16,
                        count: int = CALIBRATION_BATCHES):
    """The first ``count`` training batches of epoch 1 (the same seeded order as training) as a
    :class:`spectral_peft.Calibration` with the task's loss, for data-driven selectors."""
    from spectral_peft import Calibration

    order = epoch_batches(tokens.lengths, batch_size, torch.Generator().manual_seed(seed), bucket)[:count]

    def loss(model, index):
        device = next(model.parameters()).device
        ids, mask = tokens.batch(index)
        y = labels[index]
        if y.ndim == 2:  # per-token targets (generate): cut to the batch's width like the ids
            y = y[:, : mask.shape[1]]
        return model.loss(model(ids.to(device), mask.to(device)), y.to(device))

    return Calibration(order, loss)


def build_model(backbone: Backbone | nn.Module, num_labels: int, run: dict, seed: int, *,
                task: str = "classify", device: str | torch.device | None = None,
                calibration=None) -> tuple[TaskModel, dict]:
    """A fresh :class:`TaskModel` on a deep copy of ``backbone`` with ``run['method']`` applied.

    The head and LoRA initialisation follow ``seed``; the spectral random positions follow
    ``run["position_seed"]`` when the run has one (the runner derives it), else ``seed``.
    The model is moved to ``device``; adapter coefficients, LoRA factors and the head stay float32
    whatever the backbone's dtype. ``calibration`` (see :func:`calibration_batches`) feeds selectors
    that choose positions from data. Returns the model and parameter counts.
    """
    method = run["method"]
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    seed_everything(seed)
    model = _task_model(backbone, num_labels, task, copy_weights=True)
    if device is not None:
        model.to(device)  # before injection: selection (energy, or calibration batches) runs on the device
    targets = _targets(model, run["layers"], run["modules"]) if method in ("spectral", "lora") else None
    adapted = 0
    model.backbone.requires_grad_(method == "full")
    if method == "spectral":
        from spectral_peft import SpectralConfig, inject

        cfg = SpectralConfig(
            basis=run["basis"], basis_options=dict(run.get("basis_options") or {}), selector=run["selector"],
            n=int(run["n"]), delta=None if run.get("delta") is None else float(run["delta"]), alpha=effective_alpha(run),
            seed=int(run.get("position_seed", seed)),
            target_modules=targets,
        )
        adapted = len(matching_linears(model, targets))
        inject(model, cfg, calibration=calibration if cfg.build_selector().needs_data else None)
    elif method == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        adapted = len(matching_linears(model, targets))
        model.requires_grad_(False)
        cfg = LoraConfig(r=int(run["lora_r"]), lora_alpha=float(run["lora_alpha"]), lora_dropout=0.0,
                         target_modules=targets, bias="none")
        model = inject_adapter_in_model(cfg, model)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
            if "lora_" in name:
                p.data = p.data.float()  # peft casts the input to the factors' dtype
    if model.head is not None:
        model.head.requires_grad_(True)
    if device is not None:
        model.to(device)
    head = sum(p.numel() for p in model.head.parameters()) if model.head is not None else 0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, {"trainable_params": trainable, "head_params": head, "adapter_params": trainable - head,
                   "adapted_modules": adapted}
