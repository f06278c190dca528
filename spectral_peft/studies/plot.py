"""Plots (PNG + PDF) from a study's summary: the metric against the first grid axis with 95 %
bootstrap CI bars (never ± std), one line per combination of the other grid axes (an interaction
plot when the grid has two or more axes), and the references as horizontal lines with CI bands
(LoRA at several ranks in an n study: a curve at the n with its parameter count). Beside it, when
the study has paired comparisons, a forest plot of the paired differences to the baseline and to
LoRA at equal parameters with their 95 % CIs and the equivalence margin: per-configuration CIs
overlap far more often than paired ones, so the left panel alone hides what the tests find."""
from __future__ import annotations

import math
from pathlib import Path

from .atomic import replacing
from .grid import AXES

__all__ = ["draw", "draw_differences", "plot_results", "save_figures"]

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
            joined = len(xs) > 1 and (numeric or len(series) > 1)  # no line through unordered levels unless interacting
            ax.errorbar([x + offset for x in xs], rows["mean"], yerr=_yerr(rows), fmt="o-" if joined else "o",
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


DIFFERENCES = (("baseline", "tab:blue", "o"), ("lora", "tab:red", "s"))


def _compared(summary) -> list[tuple[str, str, str]]:
    """The (prefix, colour, marker) of each paired comparison that ``summary`` holds at least once."""
    return [(p, c, m) for p, c, m in DIFFERENCES if f"{p}_diff" in summary and summary[f"{p}_diff"].notna().any()]


def _row_labels(points: list[str]) -> tuple[list[str], str]:
    """(tick labels, axis label): ``basis=dht``, ``basis=wavelet`` -> ``dht``, ``wavelet`` and
    ``basis``; points over several axes (``basis=dht, n=256``) keep their full names."""
    axes = {p.split("=", 1)[0] for p in points}
    if len(axes) == 1 and all(p.count("=") == 1 for p in points):
        return [tick_label(p.split("=", 1)[1]) for p in points], axes.pop()
    return [tick_label(p) for p in points], ""


def draw_differences(ax, summary, margin: float, alpha: float = 0.05) -> None:
    """Forest plot: one row per configuration with a paired comparison, its mean paired difference
    (Δ = configuration − partner, points) with the 95 % CI, against the baseline and against LoRA at
    equal parameters; filled markers where the Holm-corrected p is below ``alpha``, hollow
    otherwise; the band is the equivalence margin ±``margin`` of the TOST."""
    prefixes = _compared(summary)
    rows = summary[summary[[f"{p}_diff" for p, _, _ in prefixes]].notna().any(axis=1)]
    labels, axis_name = _row_labels(list(rows["point"]))
    ax.axvspan(-margin, margin, color="tab:green", alpha=0.12, linewidth=0, label=f"equivalence margin ±{margin:g}")
    ax.axvline(0.0, color="black", linewidth=0.8)
    for i, (prefix, color, marker) in enumerate(prefixes):
        have = rows[f"{prefix}_diff"].notna().to_numpy()
        ys = [y + (i - (len(prefixes) - 1) / 2) * 0.2 for y, ok in zip(range(len(rows)), have) if ok]
        part = rows[have]
        partner = part[f"{prefix}_point"].iloc[0]
        mean = part[f"{prefix}_diff"].to_numpy()
        err = [mean - part[f"{prefix}_diff_ci_low"].to_numpy(), part[f"{prefix}_diff_ci_high"].to_numpy() - mean]
        significant = (part[f"{prefix}_p_holm"] < alpha).to_numpy()
        ax.errorbar(mean, ys, xerr=err, fmt="none", ecolor=color, capsize=3)
        for chosen, face, text in ((significant, color, f"Holm p < {alpha:g}"), (~significant, "white", "not significant")):
            if chosen.any():  # no legend entry for a marker style that is not drawn
                ax.scatter(mean[chosen], [y for y, c in zip(ys, chosen) if c], facecolors=face, edgecolors=color,
                           marker=marker, zorder=3, label=f"Δ vs {partner}, {text}")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylabel(axis_name)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first configuration on top
    ax.set_xlabel("paired difference (points), mean [95% CI]")
    ax.grid(alpha=0.3, axis="x")


def plot_results(summary, grid: dict, study, out_dir: str | Path, meta: dict, metric: str = "accuracy",
                 margin: float = 0.5) -> list[Path]:
    """Write ``<study>.png`` and ``<study>.pdf`` into ``out_dir``; returns their paths. With paired
    comparisons in ``summary`` the figure gets a second panel (:func:`draw_differences`)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    if _compared(summary):
        fig, (ax, diff_ax) = plt.subplots(1, 2, figsize=(12.0, 5.2), layout="constrained",
                                          gridspec_kw={"width_ratios": [1.4, 1.0]})
        draw_differences(diff_ax, summary, margin)
        diff_ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    else:
        fig, ax = plt.subplots(figsize=(6.8, 4.4), layout="constrained")
    draw(ax, summary, grid, log_x=study.log_x, categorical=study.categorical)
    if len(grid) == 1 and study.axis_label:
        ax.set_xlabel(study.axis_label)
    seeds = int(summary["seeds"].max())
    ax.set_ylabel(f"{meta.get('eval_split', '')} {metric.replace('_', ' ')} (%)")
    fig.suptitle(f"{study.title} ({meta.get('dataset')}, {meta.get('backbone')}, {seeds} seed{'s' if seeds != 1 else ''}; "
                 "bars: 95% bootstrap CI over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figures(fig, out_dir, study.name)
