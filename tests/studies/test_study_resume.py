"""Resume after an interruption, and reproducibility of results.csv."""
import json

import pandas as pd
import pytest

from .helpers import REPO, load_study, run  # noqa: I001  (puts the repo root on sys.path)
import spectral_peft.studies.job as job  # noqa: E402
import spectral_peft.studies.runner as runner  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def _interrupt_after(monkeypatch, k):
    real = job.train_and_evaluate
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        if calls["n"] == k:
            raise KeyboardInterrupt("simulated interruption")
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "train_and_evaluate", flaky)


def test_resume_runs_every_run_exactly_once(tmp_path, monkeypatch):
    study = load_study("ablate_delta")
    out = tmp_path / "out"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(study, out, "--seeds", "0", "1")
    partial = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    assert len(partial) == 2
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))

    monkeypatch.undo()
    assert run(study, out, "--seeds", "0", "1") == 0
    full = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    expected = 2 * (len(study.default_grid({"preset": "smoke"})) + 2)
    assert len(full) == expected and full["run_key"].is_unique
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["runs"]["done_before"] == 2 and manifest["runs"]["completed_now"] == expected - 2
    assert sorted(full["run_key"]) == sorted(manifest["runs"]["run_keys"])
    # rows written before the interruption are kept untouched
    pd.testing.assert_frame_equal(full.iloc[:2], partial)

    # a third invocation has nothing left to do
    assert run(study, out, "--seeds", "0", "1") == 0
    assert len(pd.read_csv(out / "results.csv")) == expected
    assert json.loads((out / "manifest.json").read_text())["runs"]["completed_now"] == 0

    # widening the grid runs only the new runs
    assert run(study, out, "--seeds", "0", "1", "2") == 0
    assert len(pd.read_csv(out / "results.csv")) == expected * 3 // 2


def test_failed_runs_are_recorded_and_retried(tmp_path, monkeypatch):
    study = load_study("ablate_delta")
    out = tmp_path / "out"
    real = job.train_and_evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(job, "train_and_evaluate", broken)
    assert run(study, out, "--values", "0.5", "--references", "none") == 1
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(df) == 1 and df["status"].iloc[0].startswith("error: RuntimeError")
    assert json.loads((out / "manifest.json").read_text())["errors"]
    monkeypatch.setattr(job, "train_and_evaluate", real)
    assert run(study, out, "--values", "0.5", "--references", "none") == 0
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert len(df) == 1 and df["status"].iloc[0] == "ok"


def test_same_seeds_same_results(tmp_path):
    """Two fresh smoke runs give the same results.csv except the timing columns (wall and selection time)."""
    study = load_study("ablate_basis")
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(study, a, "--seeds", "0", "1", "--epochs", "3") == 0
    assert run(study, b, "--seeds", "0", "1", "--epochs", "3") == 0
    timing = ["wall_time_s"]  # seconds measure machine load, not the run
    ta = pd.read_csv(a / "results.csv", keep_default_na=False, dtype=str)
    tb = pd.read_csv(b / "results.csv", keep_default_na=False, dtype=str)
    assert set(timing) <= set(ta.columns)
    pd.testing.assert_frame_equal(ta.drop(columns=timing), tb.drop(columns=timing))
    da = pd.read_csv(a / "results.csv")
    metrics = ["accuracy", "macro_f1", "eval_loss", "train_loss"]
    # different seeds do give different numbers (the seed is really used)
    s0, s1 = da[da["seed"] == 0][metrics].to_numpy(), da[da["seed"] == 1][metrics].to_numpy()
    assert (s0 != s1).any()


def test_cache_is_an_exact_shortcut(tmp_path):
    """--no-cache runs every layer every step; the numbers match the cached run to float rounding."""
    study = load_study("ablate_delta")
    a, b = tmp_path / "cached", tmp_path / "uncached"
    args = ("--values", "0.5", "--references", "lora", "--epochs", "3")
    assert run(study, a, *args) == 0
    assert run(study, b, *args, "--no-cache") == 0
    da, db = pd.read_csv(a / "results.csv"), pd.read_csv(b / "results.csv")
    assert list(da["cached_layers"]) == [1, 1] and list(db["cached_layers"]) == [0, 0]
    for col in ("eval_loss", "train_loss"):
        assert abs(da[col] - db[col]).max() < 1e-4, col


COMMITTED = sorted(path.parent for path in (REPO / "docs" / "results").glob("*/manifest.json")
                   if "runs" in json.loads(path.read_text()))


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda folder: folder.name)
def test_committed_results_resume_without_rerunning_a_finished_run(folder):
    """The study planned again today from the manifest of a committed results folder: each run is
    known by the key it was written with (run keys of every earlier version still match), and a
    resume would run exactly the runs the folder does not hold."""
    manifest = json.loads((folder / "manifest.json").read_text())
    cfg, dataset = manifest["config"], manifest["dataset"]
    shared = runner.shared_settings(
        cfg, dataset=dataset["name"], dataset_fingerprint=dataset["fingerprint"], backbone=manifest["backbone"]["name"],
        train_size=dataset["train_size_used"], eval_size=dataset["eval_size_used"], task=manifest["task"],
        dtype=manifest["device"]["dtype"])
    lora_ranks = {int(n): rank for n, rank in manifest["lora_ranks"].items()}
    runs = runner.plan_runs(load_study(manifest["study"]), cfg, shared, lora_ranks)
    written = manifest["runs"]["run_keys"]
    assert len(runs) == len(written) == manifest["runs"]["planned"]
    assert all(key in {run["run_key"]} | runner._earlier_keys(run) for run, key in zip(runs, written))
    rows = runner.read_rows(folder / "results.csv")
    done = {row["run_key"] for row in rows}
    assert runner.pending_runs(runs, rows) == [run for run, key in zip(runs, written) if key not in done]
    assert len(done) == len(rows) and done <= set(written)
