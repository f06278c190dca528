"""Close the loop: the energy of ΔW a selector can reach in a basis, beside the accuracy that
adapters with that basis and selector reached when trained (basis and δ ablation folders).

For every (basis, selector, δ, n) the ablation studies trained (rows of their ``results.csv`` with
``method == spectral`` and ``status == ok``, duplicates by ``run_key`` counted once), the
reachable energy is the mean of ``reachable.csv``'s ``fraction`` over the analysed layers the
study adapted (its ``layers`` × ``modules``) and over seeds. The two are compared across rows
with Spearman's ρ and Kendall's τ (``scipy.stats``).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

__all__ = ["accuracy_rows", "loop_table", "rank_correlations"]


def _delta_key(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else round(v, 9)


def accuracy_rows(folders) -> "pd.DataFrame":  # noqa: F821
    """Spectral runs of the given ablation folders: one row per (basis, selector, δ, n, layers, modules),
    with the mean, std and count of accuracy over seeds and the folders it came from."""
    import pandas as pd

    frames = []
    for folder in folders:
        path = Path(folder) / "results.csv"
        if not path.is_file():
            raise FileNotFoundError(f"--accuracy-from {folder}: no results.csv there (give a basis/δ study's output folder)")
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        needed = {"run_key", "method", "status", "basis", "selector", "delta", "n", "layers", "modules", "accuracy", "seed"}
        missing = needed - set(df.columns)
        if missing:
            raise ValueError(f"{path} is not a study's results.csv: columns {sorted(missing)} are missing")
        df = df[(df["method"] == "spectral") & (df["status"] == "ok")].copy()
        df["folder"] = Path(folder).name
        frames.append(df)
    if not frames:
        return pd.DataFrame()
    runs = pd.concat(frames, ignore_index=True)
    runs = runs.groupby("run_key", sort=False).agg(
        {**{c: "first" for c in runs.columns if c not in ("run_key", "folder")}, "folder": lambda f: "+".join(sorted(set(f)))}
    ).reset_index()
    runs["delta_key"] = runs["delta"].map(_delta_key)
    runs["accuracy"] = runs["accuracy"].astype(float)
    runs["basis_options"] = runs.get("basis_options", "")
    rows = []
    keys = ["basis", "basis_options", "selector", "delta_key", "n", "layers", "modules"]
    for key, g in runs.groupby(keys, dropna=False, sort=True):
        acc = g["accuracy"]
        rows.append(dict(zip(keys, key), accuracy=acc.mean(), accuracy_std=acc.std(ddof=1) if len(acc) > 1 else 0.0,
                         seeds=len(acc), folders="+".join(sorted(set("+".join(g["folder"]).split("+"))))))
    return pd.DataFrame(rows)


def rank_correlations(x, y) -> dict:
    """Spearman's ρ and Kendall's τ-b of ``x`` and ``y`` with p-values (NaN with fewer than 3 points)."""
    from scipy import stats

    if len(x) < 3:
        return {"points": len(x), "spearman": math.nan, "spearman_p": math.nan, "kendall": math.nan, "kendall_p": math.nan}
    rho, tau = stats.spearmanr(x, y), stats.kendalltau(x, y)
    return {"points": len(x), "spearman": float(rho.statistic), "spearman_p": float(rho.pvalue),
            "kendall": float(tau.statistic), "kendall_p": float(tau.pvalue)}


def loop_table(reachable, folders, source: str, basis_options: dict | None = None):
    """(table, correlations, notes): reachable energy beside trained accuracy, see the module docstring."""
    from ..model import target_regex

    notes = []
    acc = accuracy_rows(folders)
    if acc.empty:
        return acc, rank_correlations([], []), ["no spectral runs in the --accuracy-from folders"]
    mine = reachable[reachable["source"] == source].copy()
    mine["delta_key"] = mine["delta"].map(_delta_key)
    out = []
    for _, row in acc.iterrows():
        options = json.loads(row["basis_options"]) if row["basis_options"] not in ("", None) else {}
        wanted = dict((basis_options or {}).get(row["basis"], {}))
        entry = row.to_dict()
        entry.update(reachable=math.nan, of_oracle=math.nan, oracle=math.nan, layers_matched=0)
        if options != wanted:
            notes.append(f"{row['basis']} with options {options} (trained) differs from the analysed {wanted}; left out")
            out.append(entry)
            continue
        regex = re.compile(target_regex([int(v) for v in str(row["layers"]).split(",")], str(row["modules"]).split(",")))
        sel = mine[(mine["basis"] == row["basis"]) & (mine["selector"] == row["selector"]) & (mine["n"] == int(row["n"]))
                   & (mine["delta_key"].map(lambda d: d == row["delta_key"]))
                   & mine["layer"].map(lambda name: bool(regex.fullmatch(name)))]
        if sel.empty:
            notes.append(f"{row['basis']} / {row['selector']} δ={row['delta_key']} n={row['n']} layers={row['layers']} "
                         f"modules={row['modules']}: no analysed layer, selector or n matches; left out")
        else:
            entry.update(reachable=sel["fraction"].mean(), of_oracle=sel["of_oracle"].mean(), oracle=sel["oracle"].mean(),
                         layers_matched=sel["layer"].nunique())
        out.append(entry)
    import pandas as pd

    table = pd.DataFrame(out).rename(columns={"delta_key": "delta"})
    both = table.dropna(subset=["reachable", "accuracy"])
    return table, rank_correlations(both["reachable"].to_numpy(), both["accuracy"].to_numpy()), notes
