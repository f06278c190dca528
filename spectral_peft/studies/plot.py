"""Plots (PNG + PDF) from a study's summary: the metric against the first grid axis with 95 %
bootstrap CI bars (never ± std), one line per combination of the other grid axes (an interaction
plot when the grid has two or more axes), and the references as horizontal lines with CI bands
(LoRA at several ranks in an n study: a curve at the n with its parameter count)."""
from __future__ import annotations

import math
from pathlib import Path

from .atomic import replacing
from .grid import AXES

__all__ = ["draw", "plot_results", "save_figures"]

REF_STYLE = {"head": ("tab:gray", ":"), "lora": ("tab:red", "--"), "full": ("tab:green", "-.")}


def save_figures(fig, folder: Path, stem: str, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<folder>/<stem>.png`` and ``.pdf`` (each atomically), close it, return the paths."""
    import matplotlib.pyplot as plt

    paths = []
    for fmt in ("png", "pdf"):
        path = Path(folder) / f"{stem}.{fmt}"
        with replacing(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def tick_label(level) -> str:
    """A grid level as a tick label: spec arguments that are file paths shortened to the file's stem
    (``oracle:results/x/updates/full_seed2.safetensors`` -> ``oracle:full_seed2``)."""
    text = str(level)
    return ":".join(Path(part).stem if "/" in part or "\\" in part else part for part in text.split(":"))


def _yerr(rows):
    """Asymmetric CI bar lengths; 0 where there is no CI (one seed)."""
    low = [0.0 if math.isnan(lo) else m - lo for m, lo in zip(rows["mean"], rows["ci_low"])]
    high = [0.0 if math.isnan(hi) else hi - m for m, hi in zip(rows["mean"], rows["ci_high"])]
    return [low, high]


def draw(ax, summary, grid: dict, log_x: bool = False, categorical: bool | None = None, label_prefix: str = "") -> None:
    """Draw one study's summary on ``ax`` (used by the study plot and the combined report figure)."""
    spec = summary[summary["method"] == "spectral"]
    refs = summary[summary["method"] != "spectral"]
    axes = list(grid)
    x_axis = axes[0] if axes else None
    others = axes[1:]
    if x_axis is not None and len(spec):
        levels = list(dict.fromkeys(spec[x_axis]))
        numeric = (not categorical and AXES[x_axis] is not str and "—" not in levels)
        series = spec.groupby([spec[a] for a in others], sort=False) if others else [((), spec)]
        for i, (values, rows) in enumerate(series):
            values = values if isinstance(values, tuple) else (values,)
            name = ", ".join(f"{a}={v}" for a, v in zip(others, values) if v != "—") or "spectral"
            xs = ([float(v) for v in rows[x_axis]] if numeric else [levels.index(v) for v in rows[x_axis]])
            offset = 0.0 if numeric or len(series) == 1 else (i - (len(series) - 1) / 2) * 0.08
            ax.errorbar([x + offset for x in xs], rows["mean"], yerr=_yerr(rows), fmt="o-" if len(xs) > 1 else "o",
                        capsize=4, label=f"{label_prefix}{name}, mean [95% CI]")
        if numeric:
            if log_x:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(levels)), [tick_label(v) for v in levels], rotation=20)
            ax.set_xlim(-0.6, len(levels) - 0.4)
        ax.set_xlabel(x_axis)
    if x_axis == "n" and len(spec):
        refs = _draw_lora_on_n(ax, spec, refs, label_prefix)
    for r in refs.itertuples():
        color, style = REF_STYLE.get(r.method, ("black", "-"))
        ax.axhline(r.mean, color=color, linestyle=style,
                   label=f"{label_prefix}{r.point} ({r.adapter_params:,} adapter params): {r.mean:.1f}")
        if not math.isnan(r.ci_low):
            ax.axhspan(r.ci_low, r.ci_high, color=color, alpha=0.12, linewidth=0)


def _draw_lora_on_n(ax, spec, refs, label_prefix: str):
    """With n on the x axis and LoRA at several ranks: LoRA as a curve, each rank at the n with the
    same adapter parameter count (adapter params = n per adapted layer), instead of horizontal lines.
    Returns the references still to draw as lines."""
    lora = refs[refs["method"] == "lora"]
    if len(lora) < 2:
        return refs
    first = spec.iloc[0]
    layers = float(first["adapter_params"]) / float(first["n"])
    color, style = REF_STYLE["lora"]
    ranks = ", ".join(p.removeprefix("LoRA ") for p in lora["point"])
    ax.errorbar([p / layers for p in lora["adapter_params"]], lora["mean"], yerr=_yerr(lora), color=color,
                linestyle=style, marker="s", capsize=4,
                label=f"{label_prefix}LoRA {ranks} at equal adapter params, mean [95% CI]")
    return refs[refs["method"] != "lora"]


def plot_results(summary, grid: dict, study, out_dir: str | Path, meta: dict, metric: str = "accuracy") -> list[Path]:
    """Write ``<study>.png`` and ``<study>.pdf`` into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    draw(ax, summary, grid, log_x=study.log_x, categorical=study.categorical)
    if len(grid) == 1 and study.axis_label:
        ax.set_xlabel(study.axis_label)
    seeds = int(summary["seeds"].max())
    ax.set_ylabel(f"{meta.get('eval_split', '')} {metric.replace('_', ' ')} (%)")
    ax.set_title(f"{study.title} ({meta.get('dataset')}, {meta.get('backbone')}, {seeds} seed{'s' if seeds != 1 else ''}; "
                 "bars: 95% bootstrap CI over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figures(fig, out_dir, study.name)
