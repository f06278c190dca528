"""One run of a study, as a module-level function any executor can ship to a worker.

:class:`StudySetup` is everything a run needs besides its own settings: small and picklable
(names, sizes, seeds; no tensors). :func:`workspace` loads what it names (dataset subsets,
backbone, tokenized splits, frozen-layer cache) once per process and keeps it, so a Ray worker
that runs many runs loads the model once. :func:`execute_run` trains and scores one run and
returns its row; an exception inside a run becomes an error row carrying the traceback, so a
failed run never takes the others down. Only the driver writes files.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field

import torch

from .cache import FeatureCache, TokenView
from .data import load_dataset, subsample
from .methods import build_model, calibration_batches
from .model import answer_ids, encode_generation, encode_texts, first_trainable_layer, load_backbone, pad_token_id
from .train import GenerationTargets, TrainConfig, train_and_evaluate

__all__ = ["StudySetup", "Workspace", "check_device", "execute_run", "execute_runs", "failed_row", "resolve_device", "workspace"]


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(name: str) -> None:
    """A clear error for a device this process cannot use."""
    if name in ("auto", "cpu"):
        return
    if not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise ValueError(f"--device {name!r} is not one of auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name} asks for CUDA, but this torch ({torch.__version__}) sees no CUDA device; "
                         "use --device cpu or auto")
    index = int(name[5:]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) (cuda:0.."
                         f"cuda:{torch.cuda.device_count() - 1})")


@dataclass(frozen=True)
class StudySetup:
    """What every run of a study shares; workers rebuild the :class:`Workspace` from it."""

    dataset: str | None
    data_dir: str | None
    train_size: int | None
    eval_split: str
    eval_size: int | None
    data_seed: int
    max_len: int
    model: str
    task: str = "classify"
    dtype: str = "float32"
    device: str = "auto"
    threads: int | None = None
    cache_dir: str | None = None
    no_cache: bool = False
    train: dict = field(default_factory=dict, compare=False, hash=False)  # TrainConfig fields but lr_adapter
    expect: dict = field(default_factory=dict, compare=False, hash=False)  # fingerprints the driver saw

    def load_key(self) -> tuple:
        return (self.dataset, self.data_dir, self.train_size, self.eval_split, self.eval_size, self.data_seed,
                self.max_len, self.model, self.task, self.dtype, self.device, self.cache_dir)


@dataclass
class Workspace:
    """The loaded data and backbone of a study in one process."""

    setup: StudySetup
    dataset: object
    train_split: object
    eval_split: object
    eval_index: list  # positions of the eval items in their split
    backbone: object
    train_tokens: TokenView
    eval_tokens: TokenView
    train_targets: torch.Tensor
    eval_targets: object  # labels, or GenerationTargets
    cache: FeatureCache
    device: torch.device

    def fingerprints(self) -> dict:
        return {"dataset": self.dataset.fingerprint(), "backbone": self.backbone.fingerprint}


_WORKSPACES: dict[tuple, Workspace] = {}


def workspace(setup: StudySetup) -> Workspace:
    """The :class:`Workspace` of ``setup`` in this process (loaded on first use)."""
    key = setup.load_key()
    if key not in _WORKSPACES:
        _WORKSPACES.clear()  # one study at a time per process: free the previous backbone
        _WORKSPACES[key] = _load(setup)
    ws = _WORKSPACES[key]
    for what, expected in setup.expect.items():
        if ws.fingerprints()[what] != expected:
            raise RuntimeError(f"this worker loaded a different {what} (fingerprint {ws.fingerprints()[what]}) "
                               f"than the driver ({expected}): install the same packages and data on every node")
    return ws


def _load(setup: StudySetup) -> Workspace:
    ds = load_dataset(setup.dataset, setup.data_dir)
    if setup.eval_split not in ds.splits:
        raise ValueError(f"dataset {ds.name!r} has no {setup.eval_split!r} split (has: {sorted(ds.splits)})")
    train_split, _ = subsample(ds["train"], setup.train_size, setup.data_seed, stratified=True)
    eval_split, eval_index = subsample(ds[setup.eval_split], setup.eval_size, setup.data_seed, stratified=False)
    backbone = load_backbone(setup.model, train_texts=train_split.texts, seed=setup.data_seed, dtype=setup.dtype)
    tokenizer = backbone.tokenizer
    if setup.task == "generate":
        if backbone.kind != "decoder":
            raise ValueError(f"--task generate needs a decoder (a causal language model); {setup.model} is an "
                             f"encoder ({type(backbone.model).__name__}): use --task classify")
        names = ds.label_names
        ids, mask, tokens, _ = encode_generation(tokenizer, train_split.texts,
                                                 [names[i] for i in train_split.labels], setup.max_len)
        train_tokens, train_targets = TokenView(ids, mask), tokens
        ids, mask, tokens, prompts = encode_generation(tokenizer, eval_split.texts,
                                                       [names[i] for i in eval_split.labels], setup.max_len)
        eval_tokens = TokenView(ids, mask)
        eval_targets = GenerationTargets(
            tokens=tokens, prompts=prompts, labels=eval_split.labels, label_names=list(names),
            pad_id=pad_token_id(tokenizer),
            eos_id=int(tokenizer.eos_token_id),
            max_new_tokens=max(len(answer_ids(tokenizer, n)) for n in names),
            decode=lambda t: tokenizer.decode(t, skip_special_tokens=True))
    else:
        train_tokens = TokenView(*encode_texts(tokenizer, train_split.texts, setup.max_len))
        eval_tokens = TokenView(*encode_texts(tokenizer, eval_split.texts, setup.max_len))
        train_targets, eval_targets = train_split.labels, eval_split.labels
    return Workspace(setup, ds, train_split, eval_split, eval_index, backbone, train_tokens, eval_tokens, train_targets,
                     eval_targets, FeatureCache(setup.cache_dir), resolve_device(setup.device))


def failed_row(run: dict, text: str, wall: float = 0.0) -> dict:
    """The row of a run that raised or whose worker died; ``traceback`` goes to the manifest."""
    last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
    return dict(run, status=f"error: {last}"[:300], accuracy=float("nan"), wall_time_s=round(wall, 3),
                traceback=text)


def cache_note(prefix: int | None) -> str:
    if prefix is None:
        return "frozen-layer cache off: parameters outside the blocks train (embeddings or final norm)"
    return "frozen-layer cache off: the trainable blocks start at block 0, so nothing below them is frozen"


def execute_run(setup: StudySetup, run: dict, progress=None) -> dict:
    """Train and score one run; returns its row (config, metrics, parameter counts, wall time).

    ``progress`` (optional, in-process only) is called as ``progress(step, total, loss)``.
    """
    t0 = time.perf_counter()
    try:
        if setup.threads and torch.get_num_threads() != int(setup.threads):
            torch.set_num_threads(int(setup.threads))
        torch.use_deterministic_algorithms(True, warn_only=True)
        ws = workspace(setup)
        # seed streams (the runner derives them from the seed): init for head/LoRA, order for data order
        order_seed = int(run.get("order_seed", run["seed"]))
        # data-driven selectors see the first training batches, in the training order
        calibration = calibration_batches(ws.train_tokens, ws.train_targets, int(setup.train["batch_size"]), order_seed)
        model, counts = build_model(ws.backbone, ws.dataset.num_labels, run, int(run.get("init_seed", run["seed"])),
                                    task=setup.task, device=ws.device, calibration=calibration)
        if run["method"] == "spectral":
            from spectral_peft import trainable_parameters

            counts["trainable_params"] = int(trainable_parameters(model))
        prefix = first_trainable_layer(model)
        model.frozen_prefix = prefix or 0  # frozen blocks never use dropout, cached or not
        layer = None if setup.no_cache or not prefix else prefix
        before = (ws.cache.hits, ws.cache.misses, ws.cache.disk_hits)
        tc = time.perf_counter()
        key = f"{ws.backbone.fingerprint}|{setup.dtype}|{ws.device.type}"
        train_view = ws.cache.view(model, key, ws.train_tokens, layer)
        eval_view = ws.cache.view(model, key, ws.eval_tokens, layer)
        spent = time.perf_counter() - tc
        metrics = train_and_evaluate(
            model, train_view, ws.train_targets, eval_view, ws.eval_targets,
            TrainConfig(lr_adapter=float(run.get("lr_adapter") or 0.0), **setup.train),
            seed=order_seed, progress=progress)
        wall = time.perf_counter() - t0 - spent
        stats = dict(zip(("hits", "misses", "disk_hits"),
                         (a - b for a, b in zip((ws.cache.hits, ws.cache.misses, ws.cache.disk_hits), before))))
        row = dict(run, **metrics, **counts, cached_layers=layer or 0, wall_time_s=round(wall, 3),
                   cache_stats=dict(stats, build_time_s=spent))
        if layer is None and not setup.no_cache:
            row["cache_note"] = cache_note(prefix)
        return row
    except Exception:  # one failed run must not lose the others
        return failed_row(run, traceback.format_exc(), time.perf_counter() - t0)


def execute_runs(setup: StudySetup, runs: list[dict]) -> list[dict]:
    """:func:`execute_run` for several runs in one worker (one SLURM job for several short runs)."""
    return [execute_run(setup, run) for run in runs]


def setup_from_config(cfg: dict, train: dict) -> StudySetup:
    """The :class:`StudySetup` of a resolved study configuration."""
    return StudySetup(
        dataset=cfg.get("dataset"), data_dir=cfg.get("data_dir"), train_size=cfg.get("train_size"),
        eval_split=cfg["eval_split"], eval_size=cfg.get("eval_size"), data_seed=int(cfg["data_seed"]),
        max_len=int(cfg["max_len"]), model=cfg["backbone"], task=cfg.get("task", "classify"),
        dtype=cfg.get("dtype", "float32"), device=cfg.get("device", "auto"), threads=cfg.get("threads"),
        cache_dir=cfg.get("cache_dir"), no_cache=bool(cfg.get("no_cache")), train=dict(train))


def describe(setup: StudySetup) -> dict:
    return {k: v for k, v in asdict(setup).items() if k not in ("train", "expect")}

