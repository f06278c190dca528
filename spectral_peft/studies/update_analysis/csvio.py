"""The CSV tables of the update analysis, written atomically after every analysed update.

Every row carries the ``unit_key`` of its update and analysis settings. ``units.csv`` (one row
per source and seed) is written last, so a unit is finished exactly when its key is there;
rows of unfinished units in the other tables (left by an interruption) are dropped on the next
start, which makes reruns resume without losing or duplicating rows.
"""
from __future__ import annotations

from pathlib import Path

from ..atomic import replacing

__all__ = ["FILES", "TRAINING_METRICS", "Tables", "read_table", "write_table"]

UNIT_COLUMNS = ["unit_key", "source", "seed"]
WHERE = ["layer", "module", "block", "rows", "cols", "basis"]
COLUMNS = {
    "compaction.csv": [*UNIT_COLUMNS, *WHERE, "matrix", "k", "share", "fraction"],
    "results.csv": [*UNIT_COLUMNS, *WHERE, "matrix", "energy", "n", "fraction_at_n", "gaussian_expected_at_n",
                    "k50", "k90", "k50_share", "k90_share"],
    "reachable.csv": [*UNIT_COLUMNS, *WHERE, "n", "selector", "delta", "label", "fraction", "oracle", "of_oracle",
                      "chance"],
    "overlap.csv": [*UNIT_COLUMNS, *WHERE, "n", "intersection", "jaccard", "jaccard_chance", "recall", "spearman",
                    "spearman_p", "kendall", "kendall_p"],
}
TRAINING_METRICS = ("accuracy", "macro_f1", "eval_loss", "train_loss", "steps", "trainable_params", "wall_time_s")
UNITS = "units.csv"
UNITS_COLUMNS = [*UNIT_COLUMNS, "update_key", "file", *TRAINING_METRICS, "analysis_time_s", "status", "notes"]
FILES = (*COLUMNS, UNITS)
_RESULT_FIELD = {"compaction.csv": "compaction", "results.csv": "summary", "reachable.csv": "reachable",
                 "overlap.csv": "overlap"}


def read_table(path: Path):
    """A CSV as a pandas DataFrame (empty if the file does not exist)."""
    import pandas as pd

    if not Path(path).is_file():
        return pd.DataFrame()
    return pd.read_csv(path, dtype={"unit_key": str, "update_key": str})  # hex keys can look like numbers


def write_table(path: Path, df, columns: list[str]) -> None:
    """Write ``df`` with ``columns`` first, via a temporary file and ``os.replace`` (never half a file)."""
    path = Path(path)
    ordered = [c for c in columns if c in df.columns] + [c for c in df.columns if c not in columns]
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        df.reindex(columns=ordered).to_csv(f, index=False, float_format="%.10g")


class Tables:
    """The analysis tables of one output folder."""

    def __init__(self, out: Path):
        import pandas as pd

        self.out = Path(out)
        self.units = read_table(self.out / UNITS)
        finished = set(self.units["unit_key"]) if len(self.units) else set()
        self.frames = {}
        for name in COLUMNS:
            df = read_table(self.out / name)
            self.frames[name] = df[df["unit_key"].isin(finished)] if len(df) else pd.DataFrame()

    def finished_units(self) -> set[str]:
        return set(self.units["unit_key"]) if len(self.units) else set()

    def add_unit(self, record: dict, result) -> None:
        """Append one analysed update (``record``: units.csv row; ``result``: an AnalysisResult)."""
        import pandas as pd

        unit = {k: record[k] for k in UNIT_COLUMNS}
        for name, columns in COLUMNS.items():
            rows = pd.DataFrame([dict(unit, **r) for r in getattr(result, _RESULT_FIELD[name])])
            frame = pd.concat([self.frames[name], rows], ignore_index=True) if len(self.frames[name]) else rows
            self.frames[name] = frame
            write_table(self.out / name, frame, columns)
        row = pd.DataFrame([{c: record.get(c) for c in UNITS_COLUMNS if c != "status"} | {"status": "ok"}])
        self.units = pd.concat([self.units, row], ignore_index=True) if len(self.units) else row
        write_table(self.out / UNITS, self.units, UNITS_COLUMNS)
