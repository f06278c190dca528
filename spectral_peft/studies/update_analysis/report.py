"""Plots (PNG + PDF), the accuracy table and ``results.md`` of the update analysis, from its CSVs.

- ``compaction``: top-k energy fraction against k (log) per basis for ΔW, W0 and the Gaussian
  contrast; one row of panels per update source, one column per layer type (mean over blocks and seeds).
- ``reachable``: heat map of the mean share of ‖ΔW‖² on the positions each selector picks from W0
  (and on the best n positions, "oracle"), basis × selector, one panel per source.
- ``overlap``: heat maps of the Jaccard index of the top-n positions of W0 and ΔW (as a multiple of
  its chance value) and of Spearman's ρ of their energies, basis × layer type.
- ``loop`` (with --accuracy-from): reachable energy against trained accuracy.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..atomic import write_text
from ..plot import save_figures
from . import csvio

__all__ = ["write_outputs"]



def _write_text(path: Path, text: str) -> None:
    write_text(path, text)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _modules(df) -> list[str]:
    return list(dict.fromkeys(df.sort_values(["rows", "cols", "module"])["module"]))


def plot_compaction(comp, n_values, out: Path) -> list[Path]:
    """One row of panels per update source, one column per layer type; in each panel one colour per
    basis, ΔW solid and W0 dashed, and the Gaussian contrast (the same in every orthonormal basis) dotted."""
    plt = _pyplot()
    sources, modules = sorted(comp["source"].unique()), _modules(comp)
    bases = sorted(comp["basis"].unique())
    colors = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(bases)}
    fig, axes = plt.subplots(len(sources), len(modules), figsize=(3.0 * len(modules), 2.8 * len(sources)),
                             sharey=True, squeeze=False)
    fig.subplots_adjust(hspace=0.4)
    mean = comp.groupby(["source", "module", "matrix", "basis", "k"], as_index=False)["fraction"].mean()
    for i, source in enumerate(sources):
        for j, module in enumerate(modules):
            ax = axes[i][j]
            panel = mean[(mean["source"] == source) & (mean["module"] == module)]
            for basis in bases:
                for matrix, style in (("delta", "-"), ("w0", "--")):
                    g = panel[(panel["basis"] == basis) & (panel["matrix"] == matrix)]
                    ax.plot(g["k"], g["fraction"], color=colors[basis], linestyle=style, linewidth=1,
                            label=f"{basis}" if matrix == "delta" else None)
            g = panel[panel["matrix"] == "gaussian"].groupby("k", as_index=False)["fraction"].mean()
            ax.plot(g["k"], g["fraction"], color="black", linestyle=":", linewidth=1.2)
            for n in n_values:
                ax.axvline(n, color="tab:red", linewidth=0.7, alpha=0.6)
            ax.set_xscale("log")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.set_title(f"{module} (ΔW: {source})", fontsize=8)
            if j == 0:
                ax.set_ylabel("energy share in top k", fontsize=8)
            if i == len(sources) - 1:
                ax.set_xlabel("k (log)", fontsize=8)
            ax.tick_params(labelsize=6)
    handles, labels = axes[0][0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles += [Line2D([], [], color="gray", linestyle="-"), Line2D([], [], color="gray", linestyle="--"),
                Line2D([], [], color="black", linestyle=":"), Line2D([], [], color="tab:red")]
    labels += ["ΔW", "W0", "Gaussian (ΔW's shape, norm)", f"n = {', '.join(map(str, n_values))}"]
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=7, bbox_to_anchor=(0.5, 1.06))
    return save_figures(fig, out, "compaction", dpi=100)


def _heat(ax, table, fmt="{:.2f}", cmap="viridis", vmin=None, vmax=None, scale=1.0):
    import numpy as np

    values = table.to_numpy(dtype=float) * scale
    im = ax.imshow(values, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(table.shape[0]), [str(r) for r in table.index], fontsize=7)
    finite = values[np.isfinite(values)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=6, color="white" if v < mid else "black")
    return im


def _energy_share(selector: str, delta) -> float:
    """Columns from the least to the most W0-driven: δ for δ-mixing selectors, 0 for selectors that
    need no scores (random), 1 for the others."""
    from spectral_peft import get_selector

    if delta is not None and not (isinstance(delta, float) and math.isnan(delta)):
        return float(delta)
    try:
        return 1.0 if get_selector(selector).needs_scores else 0.0
    except (KeyError, TypeError):  # no longer registered, or needs options: put it last
        return 2.0


def reachable_table(reach, source: str, n: int):
    """basis × selector mean share of ‖ΔW‖² (plus the ``oracle`` column) for one source and n."""
    sub = reach[(reach["source"] == source) & (reach["n"] == n)]
    order = [label for _, label in sorted({(_energy_share(r.selector, r.delta), r.label) for r in sub.itertuples()})]
    table = sub.pivot_table(index="basis", columns="label", values="fraction", aggfunc="mean").reindex(columns=order)
    table["oracle"] = sub.groupby("basis")["oracle"].mean()
    return table


def plot_reachable(reach, n: int, out: Path) -> list[Path]:
    plt = _pyplot()
    sources = sorted(reach["source"].unique())
    fig, axes = plt.subplots(1, len(sources), figsize=(5.5 * len(sources), 3.4), squeeze=False)
    for ax, source in zip(axes[0], sources):
        table = reachable_table(reach, source, n)
        im = _heat(ax, table, fmt="{:.1f}", scale=100, vmin=0)
        ax.set_title(f"% of ‖ΔW‖² reachable at n = {n} (ΔW: {source})", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.04)
    return save_figures(fig, out, "reachable", dpi=100)


def plot_overlap(ov, n: int, out: Path) -> list[Path]:
    plt = _pyplot()
    sources = sorted(ov["source"].unique())
    sub = ov[ov["n"] == n].copy()
    sub["jaccard_ratio"] = sub["jaccard"] / sub["jaccard_chance"]
    fig, axes = plt.subplots(len(sources), 2, figsize=(11, 2.9 * len(sources)), squeeze=False)
    for row, source in enumerate(sources):
        s = sub[sub["source"] == source]
        cols = _modules(s)
        jac = s.pivot_table(index="basis", columns="module", values="jaccard_ratio", aggfunc="mean").reindex(columns=cols)
        rho = s.pivot_table(index="basis", columns="module", values="spearman", aggfunc="mean").reindex(columns=cols)
        im = _heat(axes[row][0], jac, fmt="{:.1f}", cmap="magma", vmin=0)
        axes[row][0].set_title(f"top-{n} Jaccard(W0, ΔW) ÷ chance (ΔW: {source})", fontsize=9)
        fig.colorbar(im, ax=axes[row][0], fraction=0.04)
        im = _heat(axes[row][1], rho, fmt="{:.2f}", cmap="coolwarm", vmin=-1, vmax=1)
        axes[row][1].set_title(f"Spearman ρ of |B(W0)|² and |B(ΔW)|² (ΔW: {source})", fontsize=9)
        fig.colorbar(im, ax=axes[row][1], fraction=0.04)
    return save_figures(fig, out, "overlap", dpi=100)


def plot_loop(table, corr, out: Path) -> list[Path]:
    plt = _pyplot()
    both = table.dropna(subset=["reachable", "accuracy"])
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    ax.errorbar(100 * both["reachable"], 100 * both["accuracy"], yerr=100 * both["accuracy_std"], fmt="o", capsize=3)
    for _, r in both.iterrows():
        label = r["basis"] + ("" if r["delta"] is None or (isinstance(r["delta"], float) and math.isnan(r["delta"]))
                              else f" δ={r['delta']:g}")
        ax.annotate(label, (100 * r["reachable"], 100 * r["accuracy"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("reachable share of ‖ΔW‖² (%)")
    ax.set_ylabel("trained accuracy (%)")
    ax.set_title(f"Spearman ρ = {corr['spearman']:.2f} (p = {corr['spearman_p']:.2g}), {corr['points']} settings",
                 fontsize=9)
    ax.grid(alpha=0.3)
    return save_figures(fig, out, "loop", dpi=100)


def _pct(x, digits: int = 1) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def markdown(summary, reach, ov, units, n: int, loop=None, notes=()) -> str:
    lines = [f"# Where does the fine-tuning update live? (n = {n})", ""]
    if len(units):
        lines += ["## Updates", "", "| source | seed | accuracy (%) | steps | train s | analysis s |", "|---|---|---|---|---|---|"]
        for _, u in units.iterrows():
            lines.append(f"| {u['source']} | {u['seed']} | {_pct(u.get('accuracy'))} | {u.get('steps')} | "
                         f"{u.get('wall_time_s')} | {u.get('analysis_time_s')} |")
        lines.append("")
    s = summary[summary["n"] == n]
    sources = sorted(s["source"].unique())
    lines += ["## Energy compaction", "",
              f"Share of the energy in the top n = {n} coefficients and k90/MN (the share of coefficients needed "
              "for 90 % of the energy), mean over layers and seeds. Gaussian: a Gaussian matrix of ΔW's shape and "
              "norm (its expected top-n share is the same in every orthonormal basis).", ""]
    head = ["basis"] + [f"ΔW {src} top-n %" for src in sources] + ["W0 top-n %", "Gaussian top-n %"] + \
        [f"ΔW {src} k90/MN %" for src in sources] + ["W0 k90/MN %", "Gaussian k90/MN %"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for basis, g in s.groupby("basis"):
        def m(matrix, col, src=None, g=g):
            sel = g[g["matrix"] == matrix]
            return sel[sel["source"] == src][col].mean() if src else sel[col].mean()
        cells = [basis] + [_pct(m("delta", "fraction_at_n", src)) for src in sources] + \
            [_pct(m("w0", "fraction_at_n")), _pct(m("gaussian", "fraction_at_n"))] + \
            [_pct(m("delta", "k90_share", src)) for src in sources] + \
            [_pct(m("w0", "k90_share")), _pct(m("gaussian", "k90_share"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += ["Per layer type: top-n share of ‖ΔW‖² divided by the Gaussian's (1 = no more compressible than noise).", ""]
    modules = _modules(s)
    for src in sources:
        d = s[(s["matrix"] == "delta") & (s["source"] == src)].set_index(["basis", "layer"])["fraction_at_n"]
        g = s[(s["matrix"] == "gaussian") & (s["source"] == src)].set_index(["basis", "layer"])["fraction_at_n"]
        ratio = (d / g).reset_index().merge(s[["layer", "module"]].drop_duplicates(), on="layer")
        table = ratio.pivot_table(index="basis", columns="module", values="fraction_at_n", aggfunc="mean")
        table = table.reindex(columns=modules)
        lines += [f"| basis (ΔW: {src}) | " + " | ".join(modules) + " |", "|" + "---|" * (len(modules) + 1)]
        for basis, r in table.iterrows():
            lines.append(f"| {basis} | " + " | ".join(f"{v:.2f}" for v in r) + " |")
        lines.append("")
    for src in sources:
        table = reachable_table(reach, src, n)
        lines += [f"## Reachable energy (ΔW: {src})", "",
                  f"Share of ‖ΔW‖² (%) on the n = {n} positions each selector picks from W0, and on the best n "
                  "positions of B(ΔW) (oracle), mean over layers and seeds. Random chance: "
                  f"{_pct(reach[reach['n'] == n]['chance'].mean(), 2)} %.", ""]
        lines += ["| basis | " + " | ".join(table.columns) + " |", "|" + "---|" * (len(table.columns) + 1)]
        for basis, r in table.iterrows():
            lines.append(f"| {basis} | " + " | ".join(_pct(v, 2) for v in r) + " |")
        lines.append("")
    o = ov[ov["n"] == n]
    lines += ["## Does W0's energy predict ΔW's?", "",
              f"Top-{n} positions by energy of B(W0) and of B(ΔW): Jaccard index (and its value for random sets), "
              "recall of ΔW's top-n among W0's, and rank correlations of the two energies over all positions; "
              "mean over layers and seeds.", "",
              "| basis | source | Jaccard | chance | recall % | Spearman ρ | Kendall τ |", "|---|---|---|---|---|---|---|"]
    for (basis, src), g in o.groupby(["basis", "source"]):
        lines.append(f"| {basis} | {src} | {g['jaccard'].mean():.4f} | {g['jaccard_chance'].mean():.4f} | "
                     f"{_pct(g['recall'].mean())} | {g['spearman'].mean():.3f} | {g['kendall'].mean():.3f} |")
    lines.append("")
    if loop is not None:
        table, corr, source = loop
        lines += ["## Reachable energy against trained accuracy", "",
                  f"ΔW source: {source}. Reachable: mean share of ‖ΔW‖² on the selector's positions over the layers the "
                  "trained adapters used; accuracy: mean over the ablation's seeds.", "",
                  "| basis | selector | δ | n | reachable % | of oracle % | accuracy % | ± std | seeds | from |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in table.sort_values("reachable").iterrows():
            d = "—" if r["delta"] is None or (isinstance(r["delta"], float) and math.isnan(r["delta"])) else f"{r['delta']:g}"
            lines.append(f"| {r['basis']} | {r['selector']} | {d} | {r['n']} | {_pct(r['reachable'], 2)} | "
                         f"{_pct(r['of_oracle'])} | {_pct(r['accuracy'])} | {_pct(r['accuracy_std'])} | {r['seeds']} | "
                         f"{r['folders']} |")
        lines += ["", f"Rank correlation over {corr['points']} settings: Spearman ρ = {corr['spearman']:.3f} "
                  f"(p = {corr['spearman_p']:.3g}), Kendall τ = {corr['kendall']:.3f} (p = {corr['kendall_p']:.3g}).", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def analysis_notes(out: Path) -> list[str]:
    """The analyses' notes (skipped bases, layers, selectors) from ``units.csv``, each once."""
    units = csvio.read_table(Path(out) / csvio.UNITS)
    if units.empty or "notes" not in units:
        return []
    found = [note for text in units["notes"].dropna() for note in json.loads(text)]
    return list(dict.fromkeys(found))


def write_outputs(out: Path, cfg: dict) -> list[Path]:
    """Every plot, ``loop.csv`` (with ``cfg["accuracy_from"]``) and ``results.md`` from the CSVs in ``out``;
    the heat maps and tables use the smallest analysed n, the compaction plot marks every n."""
    from .loop import loop_table

    out = Path(out)
    frames = {name: csvio.read_table(out / name) for name in csvio.FILES}
    if any(frames[name].empty for name in csvio.COLUMNS):
        return []
    notes = analysis_notes(out)
    n = int(sorted(frames["results.csv"]["n"].unique())[0])
    paths = plot_compaction(frames["compaction.csv"], sorted(frames["results.csv"]["n"].unique()), out)
    paths += plot_reachable(frames["reachable.csv"], n, out)
    paths += plot_overlap(frames["overlap.csv"], n, out)
    loop = None
    if cfg.get("accuracy_from"):
        source = cfg.get("loop_source", "full")
        table, corr, loop_notes = loop_table(frames["reachable.csv"], cfg["accuracy_from"], source,
                                             cfg.get("basis_options") or {})
        notes += loop_notes
        csvio.write_table(out / "loop.csv", table, list(table.columns))
        paths.append(out / "loop.csv")
        if table["reachable"].notna().any():
            paths += plot_loop(table, corr, out)
        loop = (table, corr, source)
    _write_text(out / "results.md", markdown(frames["results.csv"], frames["reachable.csv"], frames["overlap.csv"],
                                             frames["units.csv"], n, loop, notes))
    return paths + [out / "results.md"]
