"""From a study's rows to its statistics: one summary row per configuration (``summary.csv``),
per-axis marginal tables, the verdict lines and ``results.md``.

Every number is in points (0–100). Comparisons are paired by seed (:mod:`.stats`):

- against the **baseline** (``--baseline``): each point against the point that differs from it
  only in the baseline's axes (``delta=0``: the same point at δ = 0; ``basis=dht``: the same
  selector, n, δ with the dht basis); Holm's correction runs over every such comparison of the study;
- against **LoRA at equal parameters**: the LoRA reference whose adapter parameter count is
  closest to the point's; a second Holm family.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .atomic import write_text as atomic_write_text
from . import stats
from .grid import AXES, applicable_axes, format_value, point_key

__all__ = ["RARE_CLASS_ITEMS", "f1_warning", "marginals", "markdown", "point_label", "summarize", "verdict", "write_summary", "write_text"]

RARE_CLASS_ITEMS = 5  # fewer eval items than this in a class: one item moves its F1 by >= 20 points
FEW_SEEDS = 10  # below this, percentile-type bootstrap CIs are known to undercover
REFERENCES = ("baseline", "lora")
_COMPARISON_FIELDS = ("pairs", "diff", "diff_ci_low", "diff_ci_high", "diff_sd", "p", "p_holm",
                      "prob_improvement", "tost_p", "mde")


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def point_label(row, grid: dict) -> str:
    method = row["method"]
    if method == "head":
        return "head only"
    if method == "lora":
        return f"LoRA r={int(float(row['lora_r']))}"
    if method == "full":
        return "full fine-tuning"
    parts = [f"{axis}={format_value(axis, row.get(axis))}" for axis in grid
             if format_value(axis, row.get(axis)) != "—"]
    return ", ".join(parts) or "spectral"


def _by_seed(g, column: str) -> dict:
    """seed -> value in points, in seed order (the bootstrap's resamples depend on the order of the data,
    which must not depend on the order in which parallel runs finished)."""
    pairs = sorted((int(s), 100.0 * float(v)) for s, v in zip(g["seed"], g[column]) if not _isnan(float(v)))
    return dict(pairs)


_REFERENCE_ORDER = ("head", "lora", "full")


def _configuration_order(df, grid: dict) -> list:
    """The configurations of ``df["_key"]``: spectral points in grid order, then head, LoRA by rank, full.

    Not the order of the rows: executors that run in parallel write rows as runs finish.
    """
    def level(axis, value):
        levels = [format_value(axis, v) for v in grid.get(axis, [])]
        text = format_value(axis, value)
        return levels.index(text) if text in levels else len(levels)

    def rank(key):
        first = df[df["_key"].map(lambda k: k == key)].iloc[0]
        if first["method"] == "spectral":
            return (0, tuple(level(axis, first.get(axis)) for axis in grid))
        method = first["method"]
        lora_r = float(first["lora_r"]) if str(first.get("lora_r", "")).strip() not in ("", "nan") else 0.0
        return (1, _REFERENCE_ORDER.index(method) if method in _REFERENCE_ORDER else len(_REFERENCE_ORDER), lora_r)

    return sorted(dict.fromkeys(df["_key"]), key=rank)  # stable: ties keep their first appearance


def summarize(df, grid: dict, baseline: dict | None, metric: str = "accuracy", margin: float = 0.5,
              alpha: float = 0.05, power: float = 0.8):
    """One row per configuration (spectral points in grid order, then the references)."""
    import pandas as pd

    df = df.copy()
    df["_key"] = [point_key(r) if r["method"] == "spectral" else (r["method"], str(r.get("lora_r", "")))
                  for _, r in df.iterrows()]
    rows, values, f1s, keys = [], {}, {}, []
    for key in _configuration_order(df, grid):
        g = df[df["_key"].map(lambda k: k == key)]
        first = g.iloc[0]
        acc = _by_seed(g, metric)
        f1 = _by_seed(g, "macro_f1")
        d, fd = stats.describe(list(acc.values())), stats.describe(list(f1.values()))
        row = {"point": point_label(first, grid), "method": first["method"]}
        for axis in grid:
            row[axis] = format_value(axis, first.get(axis)) if first["method"] == "spectral" else ""
        row.update(adapter_params=int(float(first["adapter_params"])), seeds=d.n, mean=d.mean, ci_low=d.ci_low,
                   ci_high=d.ci_high, std=d.std, iqm=d.iqm, macro_f1=fd.mean, macro_f1_ci_low=fd.ci_low,
                   macro_f1_ci_high=fd.ci_high)
        rows.append(row)
        values[key], f1s[key] = acc, f1
        keys.append(key)
    out = pd.DataFrame(rows)

    lora_keys = [k for k, r in zip(keys, rows) if r["method"] == "lora"]
    partners: dict[str, list] = {"baseline": [], "lora": []}
    for key, row in zip(keys, rows):
        base = lora = None
        if row["method"] == "spectral":
            if baseline:
                first = df[df["_key"].map(lambda k: k == key)].iloc[0]
                target = {a: first.get(a) for a in AXES}
                target.update(baseline)
                for axis in set(AXES) - applicable_axes(target):
                    target[axis] = None
                bkey = point_key(target)
                if bkey in values and bkey != key:
                    base = bkey
            if lora_keys:
                lora = min(lora_keys, key=lambda k: abs(rows[keys.index(k)]["adapter_params"] - row["adapter_params"]))
        partners["baseline"].append(base)
        partners["lora"].append(lora)

    for ref in REFERENCES:
        results = []
        for key, partner in zip(keys, partners[ref]):
            if partner is None:
                results.append(None)
                continue
            results.append(stats.compare(values[key], values[partner], margin=margin, alpha=alpha, power=power))
        adjusted = stats.holm([r.p if r is not None else math.nan for r in results])
        out[f"{ref}_point"] = [rows[keys.index(p)]["point"] if p is not None else "" for p in partners[ref]]
        for name in _COMPARISON_FIELDS:
            if name == "p_holm":
                out[f"{ref}_p_holm"] = adjusted
            else:
                out[f"{ref}_{name}"] = [getattr(r, name) if r is not None else math.nan for r in results]
    return out


def marginals(df, grid: dict, baseline: dict | None, metric: str = "accuracy") -> dict:
    """Per grid axis with ≥ 2 levels: per level, the per-seed mean over the spectral points at
    that level (complete seeds only), its mean and CI over seeds, and, when the baseline names
    the axis, the paired difference to the baseline level with a Holm-corrected sign-flip p."""
    import pandas as pd

    spec = df[df["method"] == "spectral"]
    tables = {}
    for axis in grid:
        levels = [format_value(axis, v) for v in grid[axis]]
        col = spec[axis].map(lambda v: format_value(axis, v))
        if len(set(col) & set(levels)) < 2:
            continue
        per_level = {}
        for level in levels:
            g = spec[col == level]
            if g.empty:
                continue
            wide = g.assign(_p=[repr(point_key(r)) for _, r in g.iterrows()]).pivot_table(
                index="seed", columns="_p", values=metric, aggfunc="first").astype(float).dropna()
            per_level[level] = {int(s): 100.0 * float(v) for s, v in wide.mean(axis=1).items()}
        base_level = format_value(axis, baseline[axis]) if baseline and axis in baseline else None
        rows, comps = [], []
        for level, vals in per_level.items():
            d = stats.describe(list(vals.values()))
            row = {"level": level, "seeds": d.n, "mean": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high}
            comp = None
            if base_level in per_level and level != base_level:
                comp = stats.compare(vals, per_level[base_level])
                row.update(diff=comp.diff, diff_ci_low=comp.diff_ci_low, diff_ci_high=comp.diff_ci_high, p=comp.p)
            rows.append(row)
            comps.append(comp)
        table = pd.DataFrame(rows)
        if base_level in per_level:
            table["p_holm"] = stats.holm([c.p if c else math.nan for c in comps])
        tables[axis] = table
    return tables


# ---------------------------------------------------------------------------------------------
# text


def _num(v, digits: int = 2) -> str:
    return "n/a" if _isnan(v) else f"{v:.{digits}f}"


def _ci(mean, low, high, digits: int = 2) -> str:
    if _isnan(mean):
        return "n/a"
    spread = "n/a" if _isnan(low) else f"{low:.{digits}f}, {high:.{digits}f}"
    return f"{mean:.{digits}f} [{spread}]"


def _p_relation(v) -> str:
    """``= 0.048`` or ``< 0.001`` (for prose; the tables use :func:`_p`)."""
    text = _p(v)
    return f"< {text[1:]}" if text.startswith("<") else f"= {text}"


def _p(v) -> str:
    if _isnan(v):
        return "n/a"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _baseline_name(baseline: dict | None) -> str:
    return ", ".join(f"{a}={format_value(a, v)}" for a, v in (baseline or {}).items()) or "none"


def verdict(summary, baseline: dict | None, margin: float = 0.5, alpha: float = 0.05) -> list[str]:
    """Plain sentences: was any difference significant, the design's MDE, equivalence, LoRA."""
    lines = []
    spec = summary[summary["method"] == "spectral"]
    comp = spec[spec["baseline_point"] != ""]
    seeds = int(summary["seeds"].max()) if len(summary) else 0
    if len(comp):
        sig = comp[comp["baseline_p_holm"] < alpha]
        named = "; ".join(f"{r.point}: {r.baseline_diff:+.2f} points (Holm p {_p_relation(r.baseline_p_holm)})"
                          for r in sig.itertuples())
        mde = float(np.nanmedian(comp["baseline_mde"])) if comp["baseline_mde"].notna().any() else math.nan
        lines.append(
            f"Significant after Holm (α = {alpha:g}, exact sign-flip test, paired by seed) against the baseline "
            f"{_baseline_name(baseline)}: {len(sig)} of {len(comp)} comparisons" + (f" ({named})." if len(sig) else ".")
        )
        sentence = (f"Minimum detectable effect (α = {alpha:g}, power 0.8, from the observed paired variance): "
                    f"{_num(mde)} points with {seeds} seed{'s' if seeds != 1 else ''}.")
        if stats.smallest_p(seeds) >= alpha / max(1, len(comp)):
            sentence += (f" With {seeds} seed{'s' if seeds != 1 else ''} the sign-flip test cannot reach Holm significance at all"
                         f" (smallest p = {stats.smallest_p(seeds):.3g}).")
        lines.append(sentence)
        if not len(sig):
            eq = comp[comp["baseline_tost_p"] < alpha]
            lines.append(
                f"Equivalence to the baseline within ±{margin:g} points (TOST, α = {alpha:g}): "
                + (", ".join(eq["point"]) if len(eq) else "none") + f"; not shown for {len(comp) - len(eq)} of "
                f"{len(comp)} (no difference found is not the same as no difference).")
    else:
        lines.append("No paired comparison with a baseline (one configuration, or the baseline is not in the grid).")
    lora = spec[spec["lora_point"] != ""]
    if len(lora):
        better = int(((lora["lora_p_holm"] < alpha) & (lora["lora_diff"] > 0)).sum())
        worse = int(((lora["lora_p_holm"] < alpha) & (lora["lora_diff"] < 0)).sum())
        lines.append(f"Against LoRA at equal parameters: significantly better in {better}, worse in {worse}, "
                     f"not distinguishable in {len(lora) - better - worse} of {len(lora)} configurations (Holm).")
    if 1 < seeds < FEW_SEEDS:
        lines.append(f"With {seeds} seeds a bootstrap CI cannot reach beyond the observed values and covers the true "
                     "mean less often than 95 %; read it together with the MDE.")
    return lines


def f1_warning(class_counts: dict | None) -> str | None:
    if not class_counts:
        return None
    rare = sum(1 for c in class_counts.values() if c < RARE_CLASS_ITEMS)
    if not rare:
        return None
    return (f"Macro-F1 is unstable here: {rare} of {len(class_counts)} classes have fewer than {RARE_CLASS_ITEMS} "
            "eval items, so one item moves that class's F1 by 20 points or more; compare methods by accuracy.")


def markdown(summary, grid: dict, baseline: dict | None, tables: dict | None = None, lines=(),
             metric: str = "accuracy", margin: float = 0.5) -> str:
    base = _baseline_name(baseline)
    head = (f"| configuration | {metric} (%) mean [95% CI] | IQM | macro-F1 (%) [95% CI] | Δ vs {base} [95% CI] "
            f"| Holm p | P(better) | TOST p (±{margin:g}) | Δ vs LoRA [95% CI] | Holm p | adapter params | seeds |")
    out = [head, "|" + "---|" * 12]
    for r in summary.itertuples():
        out.append(
            f"| {r.point} | {_ci(r.mean, r.ci_low, r.ci_high)} | {_num(r.iqm)} | "
            f"{_ci(r.macro_f1, r.macro_f1_ci_low, r.macro_f1_ci_high)} | "
            + (f"{_ci(r.baseline_diff, r.baseline_diff_ci_low, r.baseline_diff_ci_high)} | {_p(r.baseline_p_holm)} | "
               f"{_num(r.baseline_prob_improvement)} | {_p(r.baseline_tost_p)}"
               if r.baseline_point else "— | — | — | —")
            + " | "
            + (f"{_ci(r.lora_diff, r.lora_diff_ci_low, r.lora_diff_ci_high)} | {_p(r.lora_p_holm)}"
               if r.lora_point else "— | —")
            + f" | {r.adapter_params:,} | {r.seeds} |")
    text = "\n".join(out) + "\n"
    if lines:
        text += "\n" + "\n".join(f"- {line}" for line in lines) + "\n"
    for axis, table in (tables or {}).items():
        text += f"\nMarginal over the other axes: {axis}\n\n| {axis} | mean [95% CI] | Δ vs baseline level [95% CI] | Holm p | seeds |\n|---|---|---|---|---|\n"
        for r in table.to_dict("records"):
            diff = _ci(r["diff"], r["diff_ci_low"], r["diff_ci_high"]) if not _isnan(r.get("diff")) else "—"
            text += (f"| {r['level']} | {_ci(r['mean'], r['ci_low'], r['ci_high'])} | {diff} | "
                     f"{_p(r.get('p_holm')) if not _isnan(r.get('diff')) else '—'} | {r['seeds']} |\n")
    return text


def write_summary(summary, path: Path) -> None:
    atomic_write_text(Path(path), summary.to_csv(index=False))


def write_text(text: str, path: Path) -> None:
    atomic_write_text(Path(path), text)
