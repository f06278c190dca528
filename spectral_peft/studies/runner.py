"""The study runner: plan the run grid, skip runs already in results.csv, run the rest, and write
results.csv (atomically, after every run), manifest.json, per-example predictions, summary.csv,
results.md and the plots."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from . import provenance as prov
from .atomic import replacing, write_json
from .cli import build_parser, resolve
from .executors import get_executor
from .grid import grid_points
from .job import check_device, describe, execute_run, setup_from_config, workspace
from .methods import comparable_lora_rank
from .presets import ALPHA_SCALINGS

__all__ = ["COLUMNS", "METRIC_COLUMNS", "Study", "derive_seeds", "main", "read_rows", "run_study"]

CONFIG_COLUMNS = [
    "method", "dataset", "dataset_fingerprint", "backbone", "preset", "seed",
    "basis", "basis_options", "selector", "n", "delta", "alpha", "alpha_scaling", "lora_r", "lora_alpha",
    "layers", "modules", "lr_adapter", "lr_head", "weight_decay", "warmup_ratio",
    "epochs", "max_steps", "batch_size", "max_len", "train_size", "eval_split", "eval_size", "data_seed",
    "cached_layers", "position_seed", "init_seed", "order_seed", "task", "dtype",
]
# run keys leave out settings at these values, so results.csv files from before they existed still resume
KEY_DEFAULTS = {"task": "classify", "dtype": "float32", "alpha_scaling": "none"}
METRIC_COLUMNS = ["accuracy", "macro_f1", "eval_loss", "train_loss", "steps", "status"]
COUNT_COLUMNS = ["trainable_params", "adapter_params", "head_params", "adapted_modules"]
# wall time stays last: it measures machine load, never methods (it is not printed as a comparison)
COLUMNS = ["run_key", "study", *CONFIG_COLUMNS, *METRIC_COLUMNS, *COUNT_COLUMNS, "provenance", "wall_time_s"]
SEED_STREAMS = ("position", "init", "order")


@dataclass
class Study:
    """One study: a grid of adapter settings per preset; the harness does the rest.

    A named study varies one ``axis`` (its grid is ``{axis: --values}``); a sweep
    (``sweep=True``) takes any grid from ``--grid`` (``grids`` then gives a default grid per preset).
    """

    name: str
    title: str
    axis: str | None  # a column of results.csv: "delta", "n", "basis", ...; None for a sweep
    axis_label: str
    description: str
    grids: dict[str, list] | dict[str, dict] | Callable[[dict], list]
    axis_type: type = float
    fixed: dict = field(default_factory=dict)  # settings this study forces
    log_x: bool = False
    categorical: bool = False
    basis_options_help: str = 'options of the basis as JSON, e.g. \'{"wavelet": "db2"}\' (default: {})'
    baseline: str | None = None  # default --baseline, e.g. "delta=0"; None: the first level of the first axis
    sweep: bool = False
    preset_overrides: dict[str, dict] = field(default_factory=dict)  # per preset: defaults this study changes

    def presets(self) -> dict[str, dict]:
        """The presets with this study's ``preset_overrides`` applied (options given still win)."""
        from .presets import PRESETS

        return {name: {**preset, **self.preset_overrides.get(name, {})} for name, preset in PRESETS.items()}

    @property
    def hidden(self) -> set[str]:
        return {self.axis, *self.fixed} - {None}

    def default_grid(self, cfg: dict) -> list | dict:
        preset = cfg["preset"]  # a variant such as quick-llm takes its family's grid
        grids = self.grids if callable(self.grids) or preset in self.grids else None
        grid = self.grids(cfg) if callable(self.grids) else self.grids[preset if grids else preset.split("-")[0]]
        return dict(grid) if self.sweep else list(grid)

    def default_baseline(self, grid: dict) -> str | None:
        """``baseline`` when every axis it names is in ``grid``; else None (the first level of the first axis)."""
        if self.baseline and all(part.partition("=")[0] in grid for part in self.baseline.split(",")):
            return self.baseline
        return None

    def grid_for(self, cfg: dict) -> dict:
        """``{axis: levels}`` of this run of the study."""
        return dict(cfg["grid"]) if self.sweep else {self.axis: [self.axis_type(v) for v in cfg["values"]]}

    def grid_help(self) -> str:
        if callable(self.grids):
            return self.grids.__doc__ or "see the study"

        def show(grid):
            if isinstance(grid, dict):
                return " ".join(f"{axis}={','.join(map(str, levels))}" for axis, levels in grid.items())
            return ",".join(map(str, grid))

        return "; ".join(f"{k}: {show(v)}" for k, v in self.grids.items())

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
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _argv(name: str, argv: list[str] | None) -> list[str]:
    """This process's argv (``argv`` None), or ``studies/<name>.py`` followed by ``argv``."""
    return list(sys.argv) if argv is None else [f"studies/{name}.py", *argv]


def _command(name: str, argv: list[str] | None) -> str:
    """:func:`_argv` as one shell command line, ``python studies/<name>.py …``."""
    return shlex.join(["python", *_argv(name, argv)])


# ---------------------------------------------------------------------------------------------
# planning


def _run_key(run: dict, key_unset: bool = False) -> str:
    """sha256 of the run's settings (:data:`CONFIG_COLUMNS`), leaving out those at their
    :data:`KEY_DEFAULTS` value or not set (a setting that does not apply to the run, such as a
    LoRA run's ``alpha_scaling``); ``key_unset`` keys the unset ones as empty (an earlier rule)."""
    def left_out(k):
        return k in KEY_DEFAULTS and (run.get(k) == KEY_DEFAULTS[k] or (run.get(k) is None and not key_unset))

    payload = {k: _fmt(run.get(k)) for k in CONFIG_COLUMNS if not left_out(k)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _earlier_keys(run: dict) -> set[str]:
    """Keys earlier versions gave this run, so that their results.csv files still resume: from
    b1ee243 until the key left out unset settings, a run without ``alpha_scaling`` (LoRA, head,
    full) was keyed with it empty."""
    return set() if run.get("alpha_scaling") is not None else {_run_key(run, key_unset=True)}


def pending_runs(runs: list[dict], rows: list[dict]) -> list[dict]:
    """The planned ``runs`` that no row of results.csv has finished (by run key, current or earlier)."""
    done = {r["run_key"] for r in rows if not r.get("status", "").startswith("error")}
    return [run for run in runs if not ({run["run_key"]} | _earlier_keys(run)) & done]


def derive_seeds(seed: int, held: dict | None = None) -> dict:
    """Separate seeds for the position draw, the initialisation and the data order (with dropout),
    derived from the run seed by ``numpy.random.SeedSequence(seed).spawn``; ``held`` fixes some
    of them (e.g. ``{"position": 0}``) so that a study varies only the others."""
    import numpy as np

    children = np.random.SeedSequence(int(seed)).spawn(len(SEED_STREAMS))
    out = {f"{name}_seed": int(child.generate_state(1)[0]) for name, child in zip(SEED_STREAMS, children)}
    for name, value in (held or {}).items():
        if value is not None:
            out[f"{name}_seed"] = int(value)
    return out


def alpha_scaling_of(cfg: dict) -> str:
    """The ``alpha_scaling`` column of the study's spectral runs: ``none``, or ``sqrt:<n0>`` with
    n0 = ``cfg["n"]`` (the preset's n or ``--n``), so that a row alone gives its effective α
    (:func:`.methods.effective_alpha`); the ``alpha`` column keeps the nominal α of the grid."""
    scaling = cfg.get("alpha_scaling") or "none"
    if scaling not in ALPHA_SCALINGS:
        raise SystemExit(f"error: alpha scaling must be one of {', '.join(ALPHA_SCALINGS)}, got {scaling!r}")
    return "none" if scaling == "none" else f"{scaling}:{int(cfg['n'])}"


def shared_settings(cfg: dict, *, dataset: str, dataset_fingerprint: str, backbone: str, train_size: int,
                    eval_size: int, task: str, dtype: str) -> dict:
    """The settings every run of the study shares: the options ``cfg`` and what loading gave."""
    return dict(
        dataset=dataset, dataset_fingerprint=dataset_fingerprint, backbone=backbone, preset=cfg["preset"],
        layers=cfg["layers"], modules=cfg["modules"], lr_head=cfg["head_lr"], weight_decay=cfg["weight_decay"],
        warmup_ratio=cfg["warmup_ratio"], epochs=float(cfg["epochs"]), max_steps=cfg.get("max_steps"),
        batch_size=cfg["batch_size"], max_len=cfg["max_len"], train_size=train_size,
        eval_split=cfg["eval_split"], eval_size=eval_size, data_seed=cfg["data_seed"],
        cached_layers=None if cfg.get("no_cache") else "auto", task=task, dtype=dtype,
    )


def plan_runs(study: Study, cfg: dict, shared: dict, lora_ranks: dict[int, int]) -> list[dict]:
    """Every run of the study, in execution order: per seed, the grid points, then the references
    (LoRA once per distinct rank: the rank with the parameter count closest to each n of the grid)."""
    runs = []
    defaults = {"basis": cfg["basis"], "selector": cfg["selector"], "n": cfg["n"], "delta": cfg["delta"],
                "alpha": cfg["alpha"]}
    points = grid_points(study.grid_for(cfg), defaults)
    held = {name: cfg.get(f"{name}_seed") for name in SEED_STREAMS}
    alpha_scaling = alpha_scaling_of(cfg)
    for seed in cfg["seeds"]:
        seeds = derive_seeds(seed, held)
        for point in points:
            run = dict(shared, method="spectral", seed=seed, lr_adapter=cfg["lr"], **point, **seeds)
            run["alpha_scaling"] = alpha_scaling
            run["basis_options"] = study.basis_options_for(cfg, run["basis"])
            runs.append(run)
        for ref in cfg["references"]:
            ranks = sorted(set(lora_ranks.values())) if ref == "lora" else [None]
            for rank in ranks:
                run = dict(shared, method=ref, seed=seed, **seeds)
                if ref == "lora":
                    run.update(lora_r=rank, lora_alpha=float(rank), lr_adapter=cfg["lora_lr"])
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


PREDICTIONS = "predictions"


def save_predictions(out: Path, run_key: str, eval_index, labels, predictions) -> None:
    """``<out>/predictions/<run_key>.npz``: the eval items' indices in their split, labels and predictions."""
    import numpy as np

    folder = out / PREDICTIONS
    folder.mkdir(exist_ok=True)
    with replacing(folder / f"{run_key}.npz") as tmp:
        np.savez_compressed(tmp, eval_index=np.asarray(eval_index, dtype=np.int64),
                            label=np.asarray(labels, dtype=np.int64), prediction=np.asarray(predictions, dtype=np.int64))


def eval_class_counts(out: Path, keys) -> dict | None:
    """Items per class in the eval split, from the stored predictions of any run of ``keys``."""
    import numpy as np

    for key in keys:
        path = out / PREDICTIONS / f"{key}.npz"
        if path.is_file():
            labels = np.load(path)["label"]
            values, counts = np.unique(labels, return_counts=True)
            return dict(zip(values.tolist(), counts.tolist()))
    return None


def finish_outputs(study: Study, out: Path, rows: list[dict], grid: dict, baseline_spec: str | None,
                   margin: float = 0.5, keys: set[str] | None = None) -> tuple[list[str], list[str]]:
    """summary.csv, results.md and the plots from the finished rows (only those of ``keys`` if
    given). Returns the written paths and the verdict lines."""
    good = [r for r in rows if r.get("status") == "ok" and r.get("study") == study.name
            and (keys is None or r["run_key"] in keys)]
    if not good:
        return [], []
    import pandas as pd

    from . import analysis
    from .grid import parse_baseline
    from .plot import plot_results

    df = pd.DataFrame(good)
    baseline = parse_baseline(baseline_spec, grid)
    summary = analysis.summarize(df, grid, baseline, margin=margin)
    tables = analysis.marginals(df, grid, baseline) if len(grid) > 1 else {}
    lines = analysis.verdict(summary, baseline, margin=margin)
    warning = analysis.f1_warning(eval_class_counts(out, df["run_key"]))
    text = analysis.markdown(summary, grid, baseline, tables, lines + ([warning] if warning else []), margin=margin)
    analysis.write_summary(summary, out / "summary.csv")
    analysis.write_text(text, out / "results.md")
    first = df.iloc[0]
    paths = [str(p) for p in plot_results(summary, grid, study, out, {
        "dataset": first["dataset"], "backbone": first["backbone"], "eval_split": first["eval_split"]}, margin=margin)]
    return paths + [str(out / "summary.csv"), str(out / "results.md")], lines


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
        # the grid and baseline of the last run into this folder, unless given on the command line
        last = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        grid = last.get("grid") if not cfg.get("grid_given") and last.get("grid") else study.grid_for(cfg)
        baseline = cfg.get("baseline") or last.get("baseline") or study.default_baseline(grid)
        paths, lines = finish_outputs(study, out, read_rows(csv_path), grid, baseline, cfg["margin"])
        if paths:
            prov.record_redraw(manifest_path, _command(study.name, argv), outputs=sorted(Path(p).name for p in paths))
        say("wrote", ", ".join(paths) or "nothing (no finished runs)")
        for line in lines:
            say(line)
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
    grid = study.grid_for(cfg)
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
        ranks = {int(n): comparable_lora_rank(backbone, cfg["layers"], cfg["modules"], int(n), task=setup.task)
                 for n in grid.get("n", [cfg["n"]])}
        lora_ranks = ranks if "lora" in cfg["references"] else {}
    except (ValueError, ImportError, FileNotFoundError) as e:  # a bad request: say what exists, run nothing
        raise SystemExit(f"error: {e}") from e
    setup = dataclasses.replace(setup, expect=ws.fingerprints())  # workers check they load the same

    shared = shared_settings(cfg, dataset=ds.name, dataset_fingerprint=ds.fingerprint(), backbone=backbone.name,
                             train_size=len(train_split), eval_size=len(eval_split), task=setup.task, dtype=setup.dtype)
    baseline = cfg.get("baseline") or study.default_baseline(grid)
    runs = plan_runs(study, cfg, shared, lora_ranks)

    rows = read_rows(csv_path)
    foreign = {r.get("study") for r in rows} - {study.name}
    if foreign:
        raise SystemExit(f"error: {csv_path} holds results of another study ({sorted(foreign)}); use another --out")
    rows = [r for r in rows if not r.get("status", "").startswith("error")]  # failed runs are retried
    done = {r["run_key"] for r in rows}
    planned = {key for r in runs for key in {r["run_key"]} | _earlier_keys(r)}
    pending = pending_runs(runs, rows)
    current = prov.provenance()
    mixed = prov.check_mixed(out, rows, current, bool(cfg.get("allow_mixed"))) if pending else []
    if mixed:
        say(f"[{study.name}] --allow-mixed: appending to rows of another provenance: " + "; ".join(mixed))
    provenance_id = prov.record_provenance(out, current) if pending else prov.provenance_id(current)
    for run in runs:
        run["provenance"] = provenance_id
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
        "command": _command(study.name, argv),
        "argv": _argv(study.name, argv),
        "cwd": os.getcwd(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": prov.git_state(),
        "packages": current["packages"],
        "source_hash": current["source_hash"],
        "provenance": provenance_id,
        "mixed_provenance": mixed,
        "platform": prov.platform_info(),
        "torch": {"threads": torch.get_num_threads(), "deterministic_algorithms": True},
        "preset": cfg["preset"],
        "seeds": cfg["seeds"],
        "axis": study.axis,
        "values": cfg.get("values"),
        "grid": grid,
        "baseline": baseline,
        "margin": cfg["margin"],
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
        "lora_rank": lora_ranks.get(int(cfg["n"])),
        "lora_ranks": {str(n): r for n, r in lora_ranks.items()},
        "runs": {"planned": len(runs), "done_before": len(runs) - len(pending), "run_keys": [r["run_key"] for r in runs]},
    }
    write_json(manifest_path, manifest)

    tqdm = _progress_bars(bool(cfg.get("quiet")))
    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc=study.name, unit="run") if tqdm else None
    cache_stats = {"hits": 0, "misses": 0, "disk_hits": 0, "build_time_s": 0.0}
    completed, errors, notes = 0, [], set()

    def label_of(run):
        return " ".join([run["method"], *(f"{a}={run.get(a)}" for a in grid if run["method"] == "spectral"),
                         f"seed={run['seed']}"])

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
        # workers only return rows (with the eval predictions); this loop alone writes files
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
            if "predictions" in record:
                save_predictions(out, run["run_key"], ws.eval_index, eval_split.labels, record.pop("predictions"))
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
        outputs, verdict = [], []
        if rows:
            try:
                outputs, verdict = finish_outputs(study, out, rows, grid, baseline, cfg["margin"], keys=planned)
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
            statistics=verdict,
        )
        manifest["runs"].update(completed_now=completed, rows_in_csv=len(rows))
        write_json(manifest_path, manifest)
    say(f"[{study.name}] {status}: {completed} runs in {time.time() - started:.1f}s -> {csv_path}")
    if (out / "results.md").is_file() and not cfg.get("quiet"):
        print((out / "results.md").read_text())
    if verdict:
        say(verdict[0])
    return 0 if not errors else 1


def main(study: Study, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point of the study scripts: like :func:`run_study`, but Ctrl-C exits quietly with 130."""
    try:
        return run_study(study, argv, prog=prog)
    except KeyboardInterrupt:
        print("interrupted: finished runs are in results.csv; rerun the same command to resume",
              file=sys.stderr)
        return 130
