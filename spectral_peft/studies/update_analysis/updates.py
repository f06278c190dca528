"""Real updates ΔW of the target layers, from fine-tuning, stored as safetensors.

Two sources, each trained with the harness (same data, cache, schedule and evaluation as the
ablation studies):

- ``full``: full fine-tuning of the target linear layers only (their weights and biases) with
  the classification head; ΔW = W_trained − W0.
- ``lora``: Hugging Face peft LoRA at a high rank r on the same layers; ΔW = (α/r)·B·A, read from
  peft's ``get_delta_weight``.

Storage contract (read by other tools, e.g. an ``oracle`` selector): one safetensors file per
source and seed; its keys are the full module names of the adapted layers in the harness model
(the names :func:`spectral_peft.inject` targets, e.g. ``backbone.encoder.layer.5.attention.self.query``),
its values ΔW as float32 out × in tensors, and its metadata (strings) name at least ``source``,
``seed``, ``model`` and ``dataset``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..methods import build_model, matching_linears
from ..model import SentenceClassifier, first_trainable_layer, target_regex
from ..train import TrainConfig, train_and_evaluate

__all__ = ["SOURCES", "fine_tune", "load_updates", "save_updates", "target_weights", "update_path"]

SOURCES = ("full", "lora")
REQUIRED_METADATA = ("source", "seed", "model", "dataset")


def update_path(folder: str | Path, source: str, seed: int) -> Path:
    """Where the update of ``source`` and ``seed`` is stored: ``<folder>/<source>_seed<seed>.safetensors``."""
    return Path(folder) / f"{source}_seed{int(seed)}.safetensors"


def target_weights(backbone: torch.nn.Module, layers, modules) -> dict[str, torch.Tensor]:
    """W0 (out × in, float32 copies) of the target linear layers, keyed by full module name in the
    harness model (``backbone.encoder.layer.<i>.<...>.<module>``)."""
    probe = SentenceClassifier(backbone, 1)
    found = matching_linears(probe, target_regex(layers, modules))
    if not found:
        raise ValueError(f"no linear layer matches layers={list(layers)} modules={list(modules)}")
    return {name: m.weight.detach().to(torch.float32).clone() for name, m in found}


def fine_tune(source: str, backbone, num_labels: int, data: dict, settings: dict, seed: int, cache,
              progress=None) -> tuple[dict[str, torch.Tensor], dict]:
    """Train ``source`` on the target layers and return (ΔW per target name, metrics).

    ``data``: ``train_tokens``, ``train_labels``, ``eval_tokens``, ``eval_labels`` (TokenViews and
    label tensors). ``settings``: ``layers``, ``modules``, ``epochs``, ``batch_size``, ``head_lr``,
    ``full_lr``, ``lora_lr``, ``lora_rank``, ``weight_decay``, ``warmup_ratio``, ``max_steps``,
    ``no_cache``. ``cache``: a :class:`~spectral_peft.studies.cache.FeatureCache`.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown update source {source!r}; choose from {', '.join(SOURCES)}")
    w0 = target_weights(backbone.model, settings["layers"], settings["modules"])
    if source == "full":
        model, _ = build_model(backbone.model, num_labels, {"method": "head"}, seed)
        for name in w0:
            model.get_submodule(name).requires_grad_(True)
        lr = settings["full_lr"]
    else:
        rank = int(settings["lora_rank"])
        run = {"method": "lora", "layers": settings["layers"], "modules": settings["modules"],
               "lora_r": rank, "lora_alpha": float(rank)}
        model, _ = build_model(backbone.model, num_labels, run, seed)
        lr = settings["lora_lr"]
    prefix = first_trainable_layer(model)
    model.frozen_prefix = prefix or 0
    layer = None if settings.get("no_cache") else prefix
    train_view = cache.view(model, backbone.fingerprint, data["train_tokens"], layer)
    eval_view = cache.view(model, backbone.fingerprint, data["eval_tokens"], layer)
    config = TrainConfig(epochs=float(settings["epochs"]), batch_size=int(settings["batch_size"]),
                         lr_adapter=float(lr), lr_head=float(settings["head_lr"]),
                         weight_decay=float(settings["weight_decay"]), warmup_ratio=float(settings["warmup_ratio"]),
                         max_steps=settings.get("max_steps"))
    metrics = train_and_evaluate(model, train_view, data["train_labels"], eval_view, data["eval_labels"], config,
                                 seed=seed, progress=progress)
    metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}  # scalars (not predictions)
    with torch.no_grad():
        if source == "full":
            deltas = {name: model.get_submodule(name).weight.detach().float() - w for name, w in w0.items()}
        else:
            deltas = {name: model.get_submodule(name).get_delta_weight("default").detach().float() for name in w0}
    metrics["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {name: d.contiguous() for name, d in deltas.items()}, metrics


def save_updates(path: str | Path, deltas: dict[str, torch.Tensor], metadata: dict) -> Path:
    """Write ΔW per module name to ``path`` (atomically) with string ``metadata`` (see the module docstring)."""
    from safetensors.torch import save_file

    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"update metadata must name {', '.join(REQUIRED_METADATA)}; missing {', '.join(missing)}")
    for name, d in deltas.items():
        if d.dim() != 2:
            raise ValueError(f"ΔW of {name!r} must be a 2-D out × in tensor, got shape {tuple(d.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in deltas.items()}, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_updates(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(ΔW per module name, metadata) from a file written by :func:`save_updates`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no stored update at {path}")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        deltas = {k: f.get_tensor(k) for k in f.keys()}
    return deltas, metadata
