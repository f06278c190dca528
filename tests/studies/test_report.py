"""summary.csv against hand-computed paired numbers, and report.py against the folders' summaries."""
import re

import numpy as np
import pandas as pd
import pytest

from .helpers import REPO, load_study, run  # noqa: I001  (puts the repo root on sys.path)
from spectral_peft.studies import analysis, stats  # noqa: E402
from spectral_peft.studies.report import main as report_main, read_summary  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def _synthetic_rows(seeds=8):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        shared = rng.normal(0, 0.01)
        for delta, shift in ((0.0, 0.0), (0.5, 0.03), (1.0, 0.0)):
            rows.append(dict(method="spectral", seed=seed, basis="dht", selector="mixed", n=64, delta=delta, alpha=1.0,
                             lora_r="", adapter_params=128, macro_f1=0.5,
                             accuracy=0.8 + shared + shift + rng.normal(0, 0.003)))
        for r, params in ((1, 128), (4, 512)):
            rows.append(dict(method="lora", seed=seed, basis="", selector="", n="", delta="", alpha="", lora_r=r,
                             adapter_params=params, macro_f1=0.5, accuracy=0.79 + shared + rng.normal(0, 0.003)))
    return pd.DataFrame(rows)


def test_summary_pairs_by_seed_against_hand_computation():
    df = _synthetic_rows()
    grid = {"delta": [0.0, 0.5, 1.0]}
    s = analysis.summarize(df, grid, {"delta": 0.0})
    by = s.set_index("point")
    acc = {d: df[(df["method"] == "spectral") & (df["delta"] == d)].set_index("seed")["accuracy"] * 100
           for d in (0.0, 0.5, 1.0)}
    diff = acc[0.5] - acc[0.0]
    assert by.loc["delta=0.5", "baseline_diff"] == pytest.approx(diff.mean())
    assert by.loc["delta=0.5", "baseline_diff_sd"] == pytest.approx(diff.std(ddof=1))
    assert by.loc["delta=0.5", "baseline_p"] == pytest.approx(stats.sign_flip_test(diff.to_numpy()))
    p = [stats.sign_flip_test((acc[d] - acc[0.0]).to_numpy()) for d in (0.5, 1.0)]
    np.testing.assert_allclose(by.loc[["delta=0.5", "delta=1"], "baseline_p_holm"], stats.holm(p))
    assert by.loc["delta=0.5", "baseline_p_holm"] < 0.05 < by.loc["delta=1", "baseline_p_holm"]
    assert by.loc["delta=0", "baseline_point"] == ""  # the baseline is not compared with itself
    # LoRA at equal parameters: r = 1 (128 parameters), not r = 4
    assert set(s[s["method"] == "spectral"]["lora_point"]) == {"LoRA r=1"}
    assert by.loc["delta=0", "mean"] == pytest.approx(acc[0.0].mean())
    assert by.loc["delta=0", "seeds"] == 8 and not np.isnan(by.loc["delta=0", "iqm"])
    lines = analysis.verdict(s, {"delta": 0.0})
    assert lines[0].endswith("1 of 2 comparisons (delta=0.5: +" + f"{by.loc['delta=0.5', 'baseline_diff']:.2f}"
                             + f" points (Holm p = {by.loc['delta=0.5', 'baseline_p_holm']:.3f})).")


def test_macro_f1_warning_names_rare_classes():
    assert analysis.f1_warning({0: 40, 1: 3, 2: 1}).startswith("Macro-F1 is unstable here: 2 of 3 classes")
    assert analysis.f1_warning({0: 40, 1: 30}) is None


def _numbers(text):
    return [float(x) for x in re.findall(r"-?\d+\.\d+", text)]


def test_report_holds_the_folders_numbers(tmp_path):
    a, b = tmp_path / "delta", tmp_path / "basis"
    assert run(load_study("ablate_delta"), a, "--seeds", "0", "1", "2", "--max-steps", "4") == 0
    assert run(load_study("ablate_basis"), b, "--values", "dht,dct", "--seeds", "0", "1", "--max-steps", "4") == 0
    out = tmp_path / "report"
    assert report_main([str(a), str(b), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    tex = (out / "report.tex").read_text()
    assert (out / "report.png").stat().st_size > 1000 and (out / "report.pdf").is_file()
    assert tex.startswith("\\begin{tabular}") and "\\bottomrule" in tex
    body = [line for line in md.splitlines() if line.startswith("| ablate_")]
    expected = []
    for folder, name in ((a, "ablate_delta"), (b, "ablate_basis")):
        summary = read_summary(folder / "summary.csv", {})
        assert sum(line.startswith(f"| {name} |") for line in body) == len(summary)
        for r in summary.to_dict("records"):
            expected.append((name, r))
    for line, (name, r) in zip(body, expected):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == name and cells[1] == r["point"]
        assert _numbers(cells[2]) == pytest.approx([round(r[k], 2) for k in ("mean", "ci_low", "ci_high")], abs=0.006)
        if r["baseline_point"]:
            assert _numbers(cells[3]) == pytest.approx(
                [round(r[k], 2) for k in ("baseline_diff", "baseline_diff_ci_low", "baseline_diff_ci_high")], abs=0.006)
            assert cells[4] == ("<0.001" if r["baseline_p_holm"] < 0.001 else f"{r['baseline_p_holm']:.3f}")
        if r["lora_point"]:
            assert _numbers(cells[5])[0] == pytest.approx(round(r["lora_diff"], 2), abs=0.006)
        assert cells[7] == str(r["seeds"])
    # the same numbers in the LaTeX table
    for _, r in expected:
        assert f"{r['mean']:.2f} [" in tex


def test_report_and_sweep_are_console_commands(tmp_path):
    import subprocess
    import sys

    for command in ("report", "sweep"):
        res = subprocess.run([sys.executable, "-m", "spectral_peft.studies", command, "--help"],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"usage: spectral-peft {command}")
    res = subprocess.run([sys.executable, "-m", "spectral_peft.studies", "report", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode != 0 and "no summary.csv" in res.stderr


@pytest.mark.parametrize("level, label", [
    ("oracle:results/analyze_update_full/updates/full_seed2.safetensors", "oracle:full_seed2"),
    ("mixed:0.7", "mixed:0.7"), ("patchwise:dct:64", "patchwise:dct:64"), (0.5, "0.5"), ("dht", "dht")])
def test_tick_labels_shorten_paths_in_specs_only(level, label):
    from spectral_peft.studies.plot import tick_label

    assert tick_label(level) == label


def test_summary_order_does_not_depend_on_the_order_runs_finished():
    """Parallel executors write rows as runs finish: the summary still lists the spectral points in grid
    order, then the references (head, LoRA by rank)."""
    df = _synthetic_rows(seeds=5)
    head = df[df["method"] == "lora"].assign(method="head", lora_r="", adapter_params=0)
    df = pd.concat([df, head.drop_duplicates("seed")], ignore_index=True)
    grid = {"delta": [0.0, 0.5, 1.0]}
    in_order = analysis.summarize(df, grid, {"delta": 0.0})
    assert list(in_order["point"]) == ["delta=0", "delta=0.5", "delta=1", "head only", "LoRA r=1", "LoRA r=4"]
    for seed in range(3):
        shuffled = analysis.summarize(df.sample(frac=1.0, random_state=seed).reset_index(drop=True), grid, {"delta": 0.0})
        pd.testing.assert_frame_equal(shuffled, in_order)


def test_an_n_study_draws_lora_at_the_n_with_its_parameter_count():
    """LoRA at several ranks becomes a curve on the n axis (params = n per adapted layer, here 4
    layers: r=1 has 3,072 params = n 768), head only stays a horizontal line; one LoRA rank stays a line."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from spectral_peft.studies.plot import draw

    def row(point, method, n, params, mean):
        return dict(point=point, method=method, n=n, adapter_params=params, mean=mean, ci_low=mean - 1, ci_high=mean + 1)

    summary = pd.DataFrame([row("n=48", "spectral", "48", 192, 65.0), row("n=768", "spectral", "768", 3072, 72.0),
                            row("head only", "head", "", 0, 58.0), row("LoRA r=1", "lora", "", 3072, 73.0),
                            row("LoRA r=4", "lora", "", 12288, 75.0)])
    fig, ax = plt.subplots()
    draw(ax, summary, {"n": [48, 768]}, log_x=True)
    lines = {line.get_label(): line for line in ax.get_lines()}
    curves = {c.get_label(): c.lines[0] for c in ax.containers}  # errorbar plots
    lora = curves["LoRA r=1, r=4 at equal adapter params, mean [95% CI]"]
    assert list(lora.get_xdata()) == [768.0, 3072.0] and list(lora.get_ydata()) == [73.0, 75.0]
    assert not any(label.startswith("LoRA") for label in lines)
    assert list(lines["head only (0 adapter params): 58.0"].get_ydata()) == [58.0, 58.0]  # axhline
    plt.close(fig)
    fig, ax = plt.subplots()
    draw(ax, summary.drop(index=4), {"n": [48, 768]}, log_x=True)
    assert "LoRA r=1 (3,072 adapter params): 73.0" in {line.get_label() for line in ax.get_lines()}
    plt.close(fig)


def test_the_differences_panel_draws_each_paired_comparison_with_its_ci_and_holm_marking():
    """The forest plot beside the means: one row per compared configuration, the mean paired
    difference at x with its CI as the bar, filled where Holm p < 0.05, hollow otherwise, for the
    baseline and for LoRA at equal parameters; the equivalence margin as the band."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from spectral_peft.studies.plot import draw_differences

    summary = analysis.summarize(_synthetic_rows(), {"delta": [0.0, 0.5, 1.0]}, {"delta": 0.0})
    fig, ax = plt.subplots()
    draw_differences(ax, summary, margin=0.7)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "0.5", "1"] and ax.get_ylabel() == "delta"
    by = summary.set_index("point")
    points = {c.get_label(): c.get_offsets() for c in ax.collections if c.get_label().startswith("Δ")}
    significant = points["Δ vs delta=0, Holm p < 0.05"]
    assert significant[:, 0].tolist() == pytest.approx([by.loc["delta=0.5", "baseline_diff"]])
    assert points["Δ vs delta=0, not significant"][:, 0].tolist() == pytest.approx([by.loc["delta=1", "baseline_diff"]])
    lora_rows = ["delta=0", "delta=0.5", "delta=1"]
    assert (by.loc[lora_rows, "lora_p_holm"] < 0.05).all()  # every LoRA comparison significant here:
    assert "Δ vs LoRA r=1, not significant" not in points  # no legend entry for a style not drawn
    assert sorted(points["Δ vs LoRA r=1, Holm p < 0.05"][:, 0].tolist()) == pytest.approx(sorted(by.loc[lora_rows, "lora_diff"]))
    bars = [seg for c in ax.collections if c.get_label() == "_nolegend_" or not c.get_label().startswith(("Δ", "equiv"))
            for seg in getattr(c, "get_segments", lambda: [])()]
    low, high = by.loc["delta=0.5", ["baseline_diff_ci_low", "baseline_diff_ci_high"]]
    assert any(seg[0][0] == pytest.approx(low) and seg[1][0] == pytest.approx(high) for seg in bars)
    band = [p for p in ax.patches if p.get_label() == "equivalence margin ±0.7"]
    assert len(band) == 1 and band[0].get_x() == pytest.approx(-0.7) and band[0].get_width() == pytest.approx(1.4)
    plt.close(fig)
