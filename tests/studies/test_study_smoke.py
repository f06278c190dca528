"""Every study end to end on the smoke preset: tiny random BERT + generated data."""
import json
import math

import pandas as pd
import pytest

from .helpers import REPO, load_study, run  # noqa: I001  (puts the repo root on sys.path)
from spectral_peft.studies import COLUMNS  # noqa: E402
from spectral_peft.studies.data import make_smoke_dataset  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def test_smoke_study_end_to_end(study, tmp_path):
    out = tmp_path / "out"
    assert run(study, out) == 0

    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    grid = study.default_grid({"preset": "smoke"})
    # a sweep's smoke grid (basis × selector) has no axis that drops out: every combination runs
    points = math.prod(len(v) for v in grid.values()) if study.sweep else len(grid)
    spectral = df[df["method"] == "spectral"]
    refs = df[df["method"] != "spectral"]
    # LoRA once per rank closest in parameters to some n of the grid: r·(32 + 32) per 32×32 layer
    ranks = sorted({max(1, round(int(n) / 64)) for n in spectral["n"]})
    assert sorted(refs[refs["method"] == "lora"]["lora_r"].astype(int)) == ranks
    assert len(df) == points + 1 + len(ranks) and len(spectral) == points
    assert sorted(set(refs["method"])) == ["head", "lora"]
    assert list(df.columns[: len(COLUMNS)]) == COLUMNS
    assert df["run_key"].is_unique
    assert (df["status"] == "ok").all() and (df["study"] == study.name).all()
    if study.sweep:
        combos = list(zip(spectral["basis"], spectral["selector"]))
        assert combos == [(b, s) for b in grid["basis"] for s in grid["selector"]]
    else:
        assert [study.axis_type(v) for v in spectral[study.axis]] == [study.axis_type(v) for v in grid]
    assert df["accuracy"].astype(float).between(0, 1).all()
    assert (df["wall_time_s"].astype(float) > 0).all()
    assert (df["seed"] == 0).all()
    # parameter counts: n per adapted layer (+ head), LoRA r·(in+out) per layer, head-only = head
    head_params = 32 * 4 + 4
    assert (df["head_params"] == head_params).all()
    n = spectral["n"].astype(int)
    assert (spectral["adapter_params"] == n * spectral["adapted_modules"]).all()
    assert (spectral["trainable_params"] == spectral["adapter_params"] + head_params).all()
    lora = refs[refs["method"] == "lora"]
    assert (lora["adapter_params"] == lora["lora_r"].astype(int) * (32 + 32) * 2).all()
    assert refs[refs["method"] == "head"].iloc[0]["trainable_params"] == head_params

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["study"] == study.name
    assert {"commit", "dirty"} <= set(manifest["git"])
    for pkg in ("torch", "transformers", "peft", "spectral_peft", "python"):
        assert pkg in manifest["packages"]
    assert manifest["packages"]["torch"]
    assert {"platform", "python", "cpu_count", "torch_threads"} <= set(manifest["platform"])
    assert manifest["seeds"] == [0] and manifest["preset"] == "smoke"
    assert manifest["config"]["n"] and manifest["config"]["layers"] == [1]
    assert "--preset smoke" in manifest["command"] and manifest["argv"]
    assert manifest["runs"]["planned"] == len(df) and manifest["runs"]["run_keys"] == list(df["run_key"])
    assert manifest["dataset"]["name"] == "smoke" and manifest["backbone"]["name"] == "tiny-bert"

    for ext in ("png", "pdf"):
        path = out / f"{study.name}.{ext}"
        assert path.is_file() and path.stat().st_size > 1000
    text = (out / "results.md").read_text()
    table = [line for line in text.split("\n\n")[0].splitlines() if line.startswith("| ")]
    assert len(table) == len(df) + 1  # header + one row per configuration (one seed each)
    assert "± 0.00" not in text and "[n/a]" in text  # one seed: no spread, said so
    assert "Significant after Holm" in text and "s/run" not in text  # wall time is no comparison
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(df) and (summary["seeds"] == 1).all() and summary["ci_low"].isna().all()
    # per-example predictions of every run: they reproduce its accuracy, on the eval split's labels
    import numpy as np

    test_labels = make_smoke_dataset()["test"].labels.numpy()
    for r in df.itertuples():
        saved = np.load(out / "predictions" / f"{r.run_key}.npz")
        assert np.array_equal(saved["label"], test_labels[saved["eval_index"]])
        assert (saved["prediction"] == saved["label"]).mean() == pytest.approx(float(r.accuracy))


def test_data_dir_and_overrides(tmp_path):
    """A user's TSV folder via --data-dir, two seeds, a custom grid and references."""
    ds = make_smoke_dataset(num_labels=3, train=60, dev=12, test=30, seed=7)
    data = tmp_path / "mydata"
    data.mkdir()
    for split in ("train", "dev", "test"):
        s = ds[split]
        pd.DataFrame({"text": s.texts, "label": [ds.label_names[i] for i in s.labels]}).to_csv(
            data / f"{split}.tsv", sep="\t", index=False)
    study = load_study("ablate_n")
    out = tmp_path / "out"
    assert run(study, out, "--data-dir", str(data), "--seeds", "0", "1", "--values", "8,32",
               "--references", "head", "--selector", "random", "--max-steps", "5") == 0
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(df) == 2 * (2 + 1)
    assert set(df["dataset"]) == {"mydata"} and set(df["seed"]) == {0, 1}
    assert set(df[df["method"] == "spectral"]["selector"]) == {"random"}
    assert set(df[df["method"] == "spectral"]["delta"]) == {""}  # random takes no δ
    assert (df["steps"] == 5).all()
    assert json.loads((out / "manifest.json").read_text())["dataset"]["num_labels"] == 3


def test_plot_only_redraws(tmp_path):
    study = load_study("ablate_delta")
    out = tmp_path / "out"
    assert run(study, out, "--values", "0.5", "--references", "none") == 0
    (out / "ablate_delta.png").unlink()
    before = json.loads((out / "manifest.json").read_text())
    assert run(study, out, "--plot-only") == 0
    assert (out / "ablate_delta.png").is_file()
    after = json.loads((out / "manifest.json").read_text())
    # the runs' provenance stays; the redraw is recorded beside it, with the code that drew it
    from spectral_peft.studies.provenance import git_state, source_hash

    assert {k: v for k, v in after.items() if k != "redrawn"} == before and "redrawn" not in before
    (redraw,) = after["redrawn"]
    assert redraw["command"].endswith("--plot-only") and redraw["commit"] == git_state()["commit"]
    assert redraw["source_hash"] == source_hash() and isinstance(redraw["code_edited"], bool)
    assert {"ablate_delta.png", "ablate_delta.pdf", "summary.csv", "results.md"} <= set(redraw["outputs"])
    assert run(study, out, "--plot-only") == 0
    assert len(json.loads((out / "manifest.json").read_text())["redrawn"]) == 2


@pytest.mark.parametrize("name", ["ablate_delta", "ablate_n", "ablate_basis"])
def test_help(name):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, str(REPO / "studies" / f"{name}.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for opt in ("--preset", "--seeds", "--dataset", "--data-dir", "--out", "--values"):
        assert opt in res.stdout
    assert ("--basis " in res.stdout) == (name != "ablate_basis")


def test_console_lists_every_study_and_runs_its_help():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "spectral_peft.studies", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    from spectral_peft.studies.catalog import studies

    for name in studies():
        assert name.replace("_", "-") in res.stdout
    res = subprocess.run([sys.executable, "-m", "spectral_peft.studies", "ablate-delta", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: spectral-peft ablate-delta")
    res = subprocess.run([sys.executable, "-m", "spectral_peft.studies", "no-such-study"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and "ablate-delta" in res.stderr


def test_option_abbreviations_are_rejected(tmp_path):
    # "--basis" must not silently parse as an abbreviation of "--basis-options"
    study = load_study("ablate_basis")
    with pytest.raises(SystemExit):
        run(study, tmp_path / "out", "--basis", "dct")
