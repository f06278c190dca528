"""Training and evaluation: AdamW with separate learning rates for the adapter and the head,
linear warmup then linear decay, seeded shuffling, accuracy on a held-out split."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TrainConfig", "evaluate", "param_groups", "seed_everything", "train_and_evaluate"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 3.0
    batch_size: int = 32
    lr_adapter: float = 1e-2  # coefficients / LoRA factors / backbone weights (full fine-tuning)
    lr_head: float = 1e-2
    weight_decay: float = 0.0  # on the head (and on backbone weights in full fine-tuning)
    warmup_ratio: float = 0.1
    max_steps: int | None = None  # overrides epochs when set
    eval_batch_size: int = 256
    bucket_batches: int = 16  # sort by length within groups of this many batches (0: plain shuffling)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Head parameters at ``lr_head``; every other trainable parameter at ``lr_adapter``.

    Spectral coefficients and LoRA factors get no weight decay (decay would pull ΔW to zero);
    full fine-tuning applies ``weight_decay`` to backbone matrices, not to biases and LayerNorms.
    """
    head, adapter_nodecay, backbone_decay = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("head."):
            head.append(p)
        elif "coefficients" in name or "lora_" in name or p.ndim < 2:
            adapter_nodecay.append(p)
        else:
            backbone_decay.append(p)
    groups = [
        {"params": head, "lr": cfg.lr_head, "weight_decay": cfg.weight_decay, "name": "head"},
        {"params": adapter_nodecay, "lr": cfg.lr_adapter, "weight_decay": 0.0, "name": "adapter"},
        {"params": backbone_decay, "lr": cfg.lr_adapter, "weight_decay": cfg.weight_decay, "name": "backbone"},
    ]
    return [g for g in groups if g["params"]]


def epoch_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator, bucket: int) -> list[torch.Tensor]:
    """One epoch of batch indices from a seeded shuffle.

    With ``bucket > 0`` ("smart batching"): the shuffled examples are cut into groups of
    ``bucket * batch_size``, each group is sorted by length and cut into batches, and the batch
    order is shuffled. Batches then hold texts of similar length, so little compute goes into
    padding, while every epoch still sees a fresh random grouping.
    """
    perm = torch.randperm(len(lengths), generator=gen)
    if bucket <= 0:
        return list(perm.split(batch_size))
    batches = []
    for group in perm.split(bucket * batch_size):
        order = torch.sort(lengths[group], stable=True).indices
        batches.extend(group[order].split(batch_size))
    shuffle = torch.randperm(len(batches), generator=gen)
    return [batches[i] for i in shuffle.tolist()]


def _forward(model, view, x, mask):
    return model(x, mask) if view.layer is None else model.forward_from(x, mask, view.layer)


@torch.no_grad()
def evaluate(model, view, labels: torch.Tensor, batch_size: int = 256) -> dict:
    was_training = model.training
    model.eval()
    pred = torch.empty(len(view), dtype=torch.long)
    loss_sum = 0.0
    order = torch.sort(view.lengths, stable=True).indices  # similar lengths together: less padding
    for index in order.split(batch_size):
        x, mask = view.batch(index)
        logits = _forward(model, view, x, mask)
        loss_sum += nn.functional.cross_entropy(logits, labels[index], reduction="sum").item()
        pred[index] = logits.argmax(-1)
    model.train(was_training)
    acc = (pred == labels).double().mean().item()
    f1s = []
    for c in torch.unique(labels).tolist():  # macro-F1 over classes present in the eval split
        tp = ((pred == c) & (labels == c)).sum().item()
        fp = ((pred == c) & (labels != c)).sum().item()
        fn = ((pred != c) & (labels == c)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"accuracy": acc, "macro_f1": sum(f1s) / len(f1s), "eval_loss": loss_sum / len(view), "predictions": pred}


def train_and_evaluate(model, train_view, train_labels, eval_view, eval_labels, cfg: TrainConfig,
                       seed: int, progress=None) -> dict:
    """Train the parameters of ``model`` that require grad; return metrics on the eval split.

    ``seed`` drives the data order and dropout. The metrics hold ``predictions``, the predicted
    label of every eval item. ``progress`` (optional) is called as ``progress(step, total_steps, loss)``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    n = len(train_view)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = int(cfg.warmup_ratio * total)
    opt = torch.optim.AdamW(param_groups(model, cfg), betas=(0.9, 0.999), eps=1e-8)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout: part of the order stream, independent of the initialisation seed
    model.train()
    step, status, recent = 0, "ok", []
    lengths = train_view.lengths
    while step < total and status == "ok":
        for index in epoch_batches(lengths, cfg.batch_size, gen, cfg.bucket_batches):
            x, mask = train_view.batch(index)
            loss = nn.functional.cross_entropy(_forward(model, train_view, x, mask), train_labels[index])
            if not torch.isfinite(loss):
                status = "diverged"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            recent.append(loss.item())
            recent = recent[-steps_per_epoch:]
            step += 1
            if progress is not None:
                progress(step, total, recent[-1])
            if step >= total:
                break
    metrics = evaluate(model, eval_view, eval_labels, cfg.eval_batch_size)
    metrics.update(train_loss=sum(recent) / max(1, len(recent)), steps=step, status=status)
    if status != "ok":
        metrics.update(accuracy=float("nan"), macro_f1=float("nan"))
    return metrics
