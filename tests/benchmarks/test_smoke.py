"""Both benchmarks run end to end in smoke mode (tiny shapes), so they cannot rot.

Timings are printed, never asserted; what is checked is that every method and basis ran and that
the CSV holds one row per (workload, method) or (basis, size).
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def test_train_step_smoke(tmp_path):
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    from spectral_peft import list_bases

    bench = _load("train_step")
    out = tmp_path / "train_step.csv"
    rows = bench.main(["--smoke", "--csv", str(out)])
    with open(out) as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) > 0
    methods = {r["method"] for r in written}
    assert {"base", "lora", "fourierft"} <= methods
    assert {f"ours:{b}" for b in list_bases()} <= methods
    assert {r["dtype"] for r in written} == {"float32", "bfloat16"}  # the bf16 column: a bf16 model, fp32 adapters
    assert {r["workload"] for r in written} == {"minilm", "stack", "wide"}
    for row in written:
        assert float(row["median_ms"]) > 0
        low, high = float(row["paired_lora_low"]), float(row["paired_lora_high"])
        assert low <= float(row["paired_lora"]) <= high and row["verdict"] in {"faster", "slower", "tie"}
    assert all(float(r["paired_lora"]) == 1.0 and r["verdict"] == "tie" for r in written if r["method"] == "lora")
    # the memory subprocess ran (smoke: one workload, base and our adapters)
    assert any(r["step_peak_mb"] != "" for r in written if r["workload"] == "stack")


def test_transforms_smoke(tmp_path):
    from spectral_peft import list_bases

    bench = _load("transforms")
    out = tmp_path / "transforms.csv"
    rows = bench.main(["--smoke", "--csv", str(out)])
    with open(out) as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows)
    assert {r["basis"] for r in written} == set(list_bases())
    assert all(float(r["forward_ms"]) > 0 and float(r["inverse_ms"]) > 0 for r in written)


def test_train_step_names_the_cpu_and_its_bf16_instructions():
    bench = _load("train_step")
    with_bf16 = "processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    assert bench.cpu_description(with_bf16).startswith("AMD EPYC 9R14, torch CPU capability ")
    assert bench.cpu_description(with_bf16).endswith("bf16 instructions: avx512_bf16")
    without = "model name\t: Old Xeon\nflags\t\t: fpu avx2 fma\n"
    assert bench.cpu_description(without).endswith("bf16 instructions: none")
    assert "bf16 instructions:" in bench.cpu_description()  # this machine's own


def test_train_step_leaves_out_bases_that_do_not_fit_a_workload():
    """A basis whose defaults refuse a layer's shape (wht needs powers of two; MiniLM is 384 wide) is
    left out of that workload with the reason, instead of stopping the whole benchmark."""
    from torch import nn

    bench = _load("train_step")
    model = nn.Sequential(nn.Linear(384, 384), nn.Linear(384, 1536))
    kept, skipped = bench.fitting_methods(["base", "lora", "ours:wht", "ours:dht", "ours:wavelet"], model, ["0", "1"])
    assert kept == ["base", "lora", "ours:dht", "ours:wavelet"]
    assert list(skipped) == ["ours:wht"] and "powers of two" in skipped["ours:wht"]
    square = nn.Sequential(nn.Linear(256, 256))
    assert bench.fitting_methods(["ours:wht"], square, ["0"]) == (["ours:wht"], {})


def test_train_step_methods_expand_ours_star_and_reject_unknown_names():
    from spectral_peft import list_bases

    bench = _load("train_step")
    every_basis = [f"ours:{b}" for b in list_bases()]
    assert bench.parse_methods("base,lora,ours:*") == ["base", "lora", *every_basis]
    assert bench.parse_methods("ours:dht, base,ours:dht") == ["ours:dht", "base"]
    assert bench.parse_methods(None) == bench.method_names()
    with pytest.raises(ValueError, match=r"unknown methods \['ours:nope', 'lora2'\]; choose from base, lora"):
        bench.parse_methods("ours:nope,lora2")


def test_paired_ratio_is_the_t_interval_of_the_log_ratios():
    import math

    from scipy import stats

    bench = _load("train_step")
    reference = [100.0, 120.0, 90.0, 110.0, 105.0]
    samples = [95.0, 126.0, 85.0, 99.0, 110.0]
    logs = [math.log(a / b) for a, b in zip(samples, reference)]
    n, mean = len(logs), sum(logs) / len(logs)
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    centre, low, high = bench.paired_ratio(samples, reference)
    assert centre == pytest.approx(math.exp(mean))
    assert (low, high) == pytest.approx((math.exp(mean - half), math.exp(mean + half)))
    assert bench.verdict(low, high) == "tie"
    # every round 10% faster: no spread, the interval is the ratio
    assert bench.paired_ratio([90.0, 108.0, 81.0], [100.0, 120.0, 90.0]) == pytest.approx((0.9, 0.9, 0.9))
    centre, low, high = bench.paired_ratio([90.0], [100.0])  # one round: a ratio, no interval, no verdict
    assert centre == pytest.approx(0.9) and math.isnan(low) and math.isnan(high) and bench.verdict(low, high) == "n/a"
    assert bench.verdict(0.85, 0.95) == "faster" and bench.verdict(1.01, 1.2) == "slower"
    with pytest.raises(ValueError, match="as many rounds"):
        bench.paired_ratio([1.0, 2.0], [1.0])


def test_train_step_runs_every_method_once_per_round_in_a_fresh_seeded_order(monkeypatch):
    bench = _load("train_step")
    workload = bench.workloads(smoke=True)["stack"]
    methods = ["base", "ours:dht", "ours:dct", "ours:identity", "ours:wavelet"]
    original = bench.Runner.step

    def timed_rounds():
        calls = []
        monkeypatch.setattr(bench.Runner, "step", lambda self, w, b: calls.append(self.method) or original(self, w, b))
        bench.time_workload(workload, methods, repeats=6, warmup=1)
        timed = calls[len(methods):]  # after one warm-up step per method
        return [timed[k : k + len(methods)] for k in range(0, len(timed), len(methods))]

    rounds = timed_rounds()
    assert len(rounds) == 6 and all(sorted(r) == sorted(methods) for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # not one fixed order
    assert len({(r[i - 1], r[i]) for r in rounds for i in range(1, len(r))}) > len(methods)  # neighbours vary
    assert timed_rounds() == rounds  # seeded: a rerun times in the same orders


def test_markdown_tables_give_each_precision_a_table_with_every_cell_from_its_row(tmp_path):
    bench = _load("train_step")

    def row(workload, dtype, method, ratio, low, high, verdict, memory, median="100"):
        return {"workload": workload, "dtype": dtype, "method": method, "median_ms": median, "paired_lora": ratio,
                "paired_lora_low": low, "paired_lora_high": high, "verdict": verdict, "mem_ratio_lora": memory}

    rows = [
        row("stack", "float32", "lora", "1.0", "1.0", "1.0", "tie", "1.0", median="215.4"),
        row("stack", "float32", "ours:wht", "0.874", "0.842", "0.905", "faster", "0.951"),
        row("wide", "float32", "lora", "1.0", "1.0", "1.0", "tie", "1.0", median="108.2"),
        row("wide", "float32", "ours:wht", "1.004", "0.95", "1.06", "tie", ""),
        row("minilm", "bfloat16", "lora", "1.0", "1.0", "1.0", "tie", "1.0", median="665"),
        row("minilm", "bfloat16", "ours:dct", "1.031", "1.012", "1.05", "slower", "0.75"),
        row("wide", "float16", "lora", "1.0", "1.0", "1.0", "tie", "", median="52"),  # memory not measured
        row("wide", "float16", "ours:dht", "0.97", "0.955", "0.99", "faster", ""),
    ]
    path = tmp_path / "run.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    printed = bench.markdown_tables(rows)
    assert bench.main(["--tables-from", str(path)]) == rows  # read back from the CSV: the same rows
    assert printed.split("\n") == [
        "float32:",
        "",
        "| method | 4×1024² stack time ×LoRA [95% CI] | 4×1024² stack mem ×LoRA | 4096² layer time ×LoRA [95% CI] "
        "| 4096² layer mem ×LoRA |",
        "|---|---|---|---|---|",
        "| lora (215 / 108 ms) | 1.00 | 1.00 | 1.00 | 1.00 |",
        "| ours:wht | 0.87 [0.84, 0.91] faster | 0.95 | 1.00 [0.95, 1.06] | — |",
        "",
        "bfloat16:",
        "",
        "| method | MiniLM time ×LoRA [95% CI] | MiniLM mem ×LoRA |",
        "|---|---|---|",
        "| lora (665 ms) | 1.00 | 1.00 |",
        "| ours:dct | 1.03 [1.01, 1.05] slower | 0.75 |",
        "",
        "float16:",
        "",
        "| method | 4096² layer time ×LoRA [95% CI] |",
        "|---|---|",
        "| lora (52 ms) | 1.00 |",
        "| ours:dht | 0.97 [0.95, 0.99] faster |",
    ]
