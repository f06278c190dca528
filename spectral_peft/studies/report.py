"""``spectral-peft report``: one combined table (markdown and LaTeX) and one figure from any
number of study folders, straight from their ``summary.csv`` and ``manifest.json``.

    spectral-peft report results/ablate_delta_full results/ablate_basis_full --out results/report

Each row: study, configuration, accuracy mean [95 % CI], paired difference to the study's
baseline [95 % CI] with its Holm-corrected p, and the same against LoRA at equal parameters.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

__all__ = ["build_parser", "load_folder", "main", "read_summary", "to_latex", "to_markdown"]


def load_folder(folder: Path) -> dict:
    folder = Path(folder)
    summary_path, manifest_path = folder / "summary.csv", folder / "manifest.json"
    if not summary_path.is_file():
        raise SystemExit(f"error: {folder} has no summary.csv; run its study (or the study with --plot-only "
                         f"--out {folder}) first")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    grid = manifest.get("grid") or {}
    summary = read_summary(summary_path, grid)
    return {"folder": folder, "name": manifest.get("study", folder.name), "title": manifest.get("title", folder.name),
            "grid": grid, "baseline": manifest.get("baseline"), "summary": summary,
            "dataset": (manifest.get("dataset") or {}).get("name"), "seeds": manifest.get("seeds")}


def read_summary(path: Path, grid: dict):
    """summary.csv with its text columns as written ("" for none) and every other column numeric."""
    import pandas as pd

    summary = pd.read_csv(path, dtype=str, keep_default_na=False)
    text = {"point", "method", "baseline_point", "lora_point", *grid}
    for column in summary.columns:
        if column not in text:
            summary[column] = pd.to_numeric(summary[column].replace("", None), errors="coerce")
    return summary


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _ci(mean, low, high) -> str:
    if _isnan(mean):
        return "n/a"
    return f"{mean:.2f} [{'n/a' if _isnan(low) else f'{low:.2f}, {high:.2f}'}]"


def _p(v) -> str:
    return "n/a" if _isnan(v) else ("<0.001" if v < 0.001 else f"{v:.3f}")


def _cells(r, ref: str) -> tuple[str, str]:
    if not r[f"{ref}_point"]:
        return "—", "—"
    return _ci(r[f"{ref}_diff"], r[f"{ref}_diff_ci_low"], r[f"{ref}_diff_ci_high"]), _p(r[f"{ref}_p_holm"])


def rows(studies: list[dict]) -> list[list[str]]:
    out = []
    for s in studies:
        for r in s["summary"].to_dict("records"):
            base, base_p = _cells(r, "baseline")
            lora, lora_p = _cells(r, "lora")
            out.append([s["name"], r["point"], _ci(r["mean"], r["ci_low"], r["ci_high"]), base, base_p, lora, lora_p,
                        str(int(r["seeds"]))])
    return out


HEADER = ["study", "configuration", "accuracy (%) mean [95% CI]", "Δ vs baseline [95% CI]", "Holm p",
          "Δ vs LoRA [95% CI]", "Holm p", "seeds"]


def to_markdown(studies: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(studies)]
    notes = [f"- {s['name']} ({s['title']}; {s['dataset']}): baseline {s['baseline'] or 'first grid level'}"
             for s in studies]
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("δ", r"$\delta$"), ("Δ", r"$\Delta$"), ("—", "--"), ("<", r"$<$")):
        text = text.replace(a, b)
    return text


def to_latex(studies: list[dict]) -> str:
    lines = [r"\begin{tabular}{ll" + "r" * (len(HEADER) - 2) + "}", r"\toprule",
             " & ".join(_tex(h) for h in HEADER) + r" \\", r"\midrule"]
    previous = None
    for cells in rows(studies):
        if previous is not None and cells[0] != previous:
            lines.append(r"\midrule")
        previous = cells[0]
        lines.append(" & ".join(_tex(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def figure(studies: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from .plot import draw, save_figures

    fig, axes = plt.subplots(1, len(studies), figsize=(5.2 * len(studies), 4.2), squeeze=False)
    for ax, s in zip(axes[0], studies):
        grid = s["grid"] or {}
        numeric_log = list(grid)[:1] == ["n"]
        draw(ax, s["summary"], grid, log_x=numeric_log, categorical=None)
        ax.set_title(f"{s['title']} ({s['dataset']})", fontsize=9)
        ax.set_ylabel("accuracy (%), mean [95% CI]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    return save_figures(fig, out, "report")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog or "python studies/report.py", allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="study output folders (each with summary.csv "
                   "and manifest.json, as every study writes them)")
    p.add_argument("--out", metavar="DIR", default="results/report",
                   help="where report.md, report.tex, report.png and report.pdf go (default: results/report)")
    return p


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    studies = [load_folder(Path(f)) for f in args.folders]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from .analysis import write_text

    write_text(to_markdown(studies), out / "report.md")
    write_text(to_latex(studies), out / "report.tex")
    paths = figure(studies, out)
    print(f"wrote {out / 'report.md'}, {out / 'report.tex'}, " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
