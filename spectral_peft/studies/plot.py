"""Plots (PNG + PDF) and a markdown table from results.csv: metric vs the ablated axis,
mean ± std over seeds, reference methods as horizontal lines with a ±std band."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

__all__ = ["plot_results", "summarize", "write_markdown"]

REF_STYLE = {"head": ("tab:gray", ":"), "lora": ("tab:red", "--"), "full": ("tab:green", "-.")}


def _label(row) -> str:
    m = row["method"]
    if m == "head":
        return "head only"
    if m == "lora":
        return f"LoRA r={int(row['lora_r'])}"
    if m == "full":
        return "full fine-tuning"
    return f"{row['basis']} / {row['selector']}"


def summarize(df, axis: str, metric: str = "accuracy"):
    """One row per (method, axis value) with mean/std/count of ``metric`` over seeds."""
    import pandas as pd

    df = df.copy()
    df["series"] = df.apply(_label, axis=1)
    df["_x"] = df[axis].where(df["method"] == "spectral", "")
    df["_x"] = df["_x"].fillna("")
    order = list(dict.fromkeys(zip(df["method"], df["series"], df["_x"].astype(str))))
    rows = []
    for method, series, x in order:
        g = df[(df["method"] == method) & (df["series"] == series) & (df["_x"].astype(str) == x)]
        vals = g[metric].astype(float)
        rows.append({
            "method": method, "series": series, "x": g["_x"].iloc[0], "mean": vals.mean(),
            "std": vals.std(ddof=1) if len(vals) > 1 else 0.0, "seeds": len(vals),
            "macro_f1": g["macro_f1"].astype(float).mean() if "macro_f1" in g else math.nan,
            "adapter_params": int(g["adapter_params"].iloc[0]), "trainable_params": int(g["trainable_params"].iloc[0]),
            "wall_time_s": g["wall_time_s"].astype(float).mean(),
        })
    return pd.DataFrame(rows)


def _spectral_desc(df, study, basis: bool = True) -> str:
    """e.g. 'dht / mixed δ=0.7' (leaving out the ablated axis)."""
    r = df[df["method"] == "spectral"].iloc[0]
    parts = [] if not basis or study.axis == "basis" else [f"{r['basis']} /"]
    parts.append(str(r["selector"]))
    if study.axis != "delta" and str(r.get("delta", "")) not in ("", "nan"):
        parts.append(f"δ={float(r['delta']):g}")
    return " ".join(parts)


def _atomic_savefig(fig, path: Path, fmt: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=f".{fmt}.tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def plot_results(df, study, out_dir: str | Path, metric: str = "accuracy") -> list[Path]:
    """Write ``<study>.png`` and ``<study>.pdf`` into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    summary = summarize(df, study.axis, metric)
    spec = summary[summary["method"] == "spectral"]
    refs = summary[summary["method"] != "spectral"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    scale = 100.0
    if len(spec):
        if study.categorical:
            xs = list(range(len(spec)))
            ax.errorbar(xs, spec["mean"] * scale, yerr=spec["std"] * scale, fmt="o", capsize=4,
                        color="tab:blue", label=f"spectral, {_spectral_desc(df, study, basis=False)}, mean ± std")
            ax.set_xticks(xs, [str(x) for x in spec["x"]], rotation=20)
            ax.set_xlim(-0.6, len(xs) - 0.4)
        else:
            xs = spec["x"].astype(float).to_numpy()
            ax.errorbar(xs, spec["mean"] * scale, yerr=spec["std"] * scale, fmt="o-", capsize=4,
                        color="tab:blue", label=f"spectral {_spectral_desc(df, study)}, mean ± std")
            if study.log_x:
                ax.set_xscale("log")
    for _, r in refs.iterrows():
        color, style = REF_STYLE.get(r["method"], ("black", "-"))
        m, s = r["mean"] * scale, r["std"] * scale
        ax.axhline(m, color=color, linestyle=style,
                   label=f"{r['series']} ({r['adapter_params']:,} adapter params): {m:.1f}")
        if s > 0:
            ax.axhspan(m - s, m + s, color=color, alpha=0.12, linewidth=0)
    first = df.iloc[0]
    seeds = df["seed"].nunique()
    ax.set_xlabel(study.axis_label)
    ax.set_ylabel(f"{first['eval_split']} {metric.replace('_', ' ')} (%)")
    where = f"{first['dataset']}, {first['backbone']}, {seeds} seed{'s' if seeds != 1 else ''}"
    extra = "" if study.axis == "n" else f", n={int(first['n'])}" if str(first.get("n", "")) not in ("", "nan") else ""
    ax.set_title(f"{study.title} ({where}{extra})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    paths = []
    for fmt in ("png", "pdf"):
        path = out_dir / f"{study.name}.{fmt}"
        _atomic_savefig(fig, path, fmt)
        paths.append(path)
    plt.close(fig)
    return paths


def write_markdown(df, study, path: str | Path, metric: str = "accuracy") -> None:
    s = summarize(df, study.axis, metric)
    header = f"| {study.axis} | method | {metric} (%) mean ± std | macro-F1 (%) | adapter params | trainable params | seeds | s/run |"
    lines = [header, "|" + "---|" * 8]
    for _, r in s.iterrows():
        x = r["x"] if r["method"] == "spectral" else "—"
        lines.append(
            f"| {x} | {r['series']} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | {100 * r['macro_f1']:.2f} | "
            f"{r['adapter_params']:,} | {r['trainable_params']:,} | {r['seeds']} | {r['wall_time_s']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".md.tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
