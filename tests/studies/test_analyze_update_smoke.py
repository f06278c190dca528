"""studies/analyze_update.py end to end on the smoke preset: outputs, the storage contract of the
stored updates, determinism, resume after an interruption, reuse of stored updates, and the
loop-closing table against a real smoke δ ablation."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

from .helpers import REPO, load_study, run  # noqa: I001  (puts the repo root on sys.path)
import spectral_peft.studies.update_analysis.command as command  # noqa: E402
from spectral_peft.studies.update_analysis import csvio  # noqa: E402
from spectral_peft.studies.update_analysis.updates import load_updates  # noqa: E402

pytestmark = pytest.mark.timeout(600)
TIME_COLUMNS = {"wall_time_s", "analysis_time_s"}


def analyze(out, *extra) -> int:
    return command.main(["--preset", "smoke", "--out", str(out), "--quiet", *extra])


def tables(out) -> dict[str, pd.DataFrame]:
    found = {}
    for name in csvio.FILES:
        df = pd.read_csv(out / name, dtype=str, keep_default_na=False)
        found[name] = df.drop(columns=[c for c in TIME_COLUMNS if c in df.columns])
    return found


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze") / "out"
    assert analyze(out) == 0
    return out


def test_outputs_csvs_manifest_and_plots(smoke):
    t = tables(smoke)
    units = t["units.csv"]
    assert sorted(zip(units["source"], units["seed"])) == [("full", "0"), ("lora", "0")]
    assert set(units["status"]) == {"ok"} and units["unit_key"].is_unique
    manifest = json.loads((smoke / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["git"]["commit"]
    assert set(manifest["target_layers"]) == set(t["results.csv"]["layer"])
    from spectral_peft import list_bases

    assert set(t["results.csv"]["basis"]) == set(list_bases())  # every basis takes the smoke shapes
    assert set(t["results.csv"]["matrix"]) == {"delta", "w0", "gaussian"}
    assert len(t["results.csv"]) == 2 * len(list_bases()) * len(manifest["target_layers"]) * 3
    for stem in ("compaction", "reachable", "overlap"):
        for fmt in ("png", "pdf"):
            assert (smoke / f"{stem}.{fmt}").stat().st_size > 1000
    text = (smoke / "results.md").read_text()
    for heading in ("Energy compaction", "Reachable energy (ΔW: full)", "Reachable energy (ΔW: lora)",
                    "Does W0's energy predict ΔW's?"):
        assert heading in text
    assert not list(smoke.glob(".*.tmp"))


def test_stored_updates_follow_the_storage_contract(smoke):
    from spectral_peft import SpectralConfig, adapters, inject
    from spectral_peft.studies.model import SentenceClassifier, load_backbone, target_regex
    from spectral_peft.studies.data import load_dataset

    cfg = command.PRESETS["smoke"]
    ds = load_dataset("smoke")
    backbone = load_backbone("tiny-bert", train_texts=ds["train"].texts, seed=cfg["data_seed"])
    model = SentenceClassifier(backbone.model, ds.num_labels)
    inject(model, SpectralConfig(n=4, target_modules=target_regex(cfg["layers"], cfg["modules"])))
    targets = adapters(model)
    for source in ("full", "lora"):
        deltas, meta = load_updates(smoke / "updates" / f"{source}_seed0.safetensors")
        assert set(deltas) == set(targets)  # the names spectral_peft.inject targets
        assert meta["source"] == source and meta["seed"] == "0"
        assert meta["model"] == "tiny-bert" and meta["dataset"] == "smoke"
        for name, d in deltas.items():
            assert d.dtype == torch.float32
            assert tuple(d.shape) == tuple(targets[name].weight.shape)  # out × in
            assert d.norm() > 0
            if source == "lora":  # (α/r)·B·A has rank at most r
                assert torch.linalg.matrix_rank(d, rtol=1e-5) <= cfg["lora_rank"] < min(d.shape)
        assert json.loads(meta["training"])["accuracy"] > 0.25  # better than chance on 4 classes


def test_deterministic_resumable_and_reusing_stored_updates(smoke, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = command.analyse_update
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated interruption")
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(command, "analyse_update", interrupted)
    assert analyze(out) == 130
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert len(pd.read_csv(out / "units.csv")) == 1
    assert (out / "updates" / "lora_seed0.safetensors").is_file()  # trained before the interruption

    monkeypatch.setattr(command, "analyse_update", real)
    trained = []
    real_fine_tune = command.fine_tune
    monkeypatch.setattr(command, "fine_tune", lambda *a, **k: trained.append(a[0]) or real_fine_tune(*a, **k))
    assert analyze(out) == 0
    assert trained == []  # both updates were stored: nothing is retrained
    fresh, resumed = tables(smoke), tables(out)
    for name in csvio.FILES:  # same rows as an uninterrupted run, each once
        pd.testing.assert_frame_equal(fresh[name], resumed[name], check_like=False, obj=name)

    # a rerun has nothing to do; a new --n reuses the stored updates and analyses again
    assert analyze(out) == 0 and trained == []
    assert len(pd.read_csv(out / "units.csv")) == 2
    # (with a wavelet level too deep for the 32-wide layers: skipped, and said so)
    assert analyze(out, "--n", "32", "--basis-options", '{"wavelet": {"level": 6}}') == 0 and trained == []
    reach = pd.read_csv(out / "reachable.csv")
    assert set(reach["n"]) == {64, 32}  # rows of the n = 64 analysis stay
    assert "wavelet" not in set(reach[reach["n"] == 32]["basis"])
    notes = [note for note in json.loads((out / "manifest.json").read_text())["notes"]
             if note.startswith("basis wavelet")]
    assert notes and all("divisible by 2**6" in note for note in notes)
    assert notes[0] in (out / "results.md").read_text()
    # updates trained with other settings are refused, not silently mixed
    with pytest.raises(SystemExit, match="other settings"):
        analyze(out, "--epochs", "1")


def test_loop_table_against_a_real_delta_ablation(smoke, tmp_path):
    from scipy import stats

    from spectral_peft.studies.model import target_regex

    ablation = tmp_path / "delta"
    assert run(load_study("ablate_delta"), ablation, "--references", "none") == 0
    out = tmp_path / "out"
    shutil.copytree(smoke, out)
    assert analyze(out, "--plot-only", "--accuracy-from", str(ablation)) == 0
    (redraw,) = json.loads((out / "manifest.json").read_text())["redrawn"]  # which folders the loop read
    assert redraw["accuracy_from"] == [str(ablation)] and "loop.csv" in redraw["outputs"]
    loop = pd.read_csv(out / "loop.csv")
    acc = pd.read_csv(ablation / "results.csv")
    assert sorted(loop["delta"]) == sorted(acc["delta"])
    reach = pd.read_csv(out / "reachable.csv")
    regex = re.compile(target_regex(command.PRESETS["smoke"]["layers"], ["query", "value"]))
    for _, row in loop.iterrows():
        mine = reach[(reach["source"] == "full") & (reach["basis"] == "dht") & (reach["selector"] == "mixed")
                     & (reach["delta"] == row["delta"]) & (reach["n"] == 64) & reach["layer"].map(
                         lambda n: bool(regex.fullmatch(n)))]
        assert len(mine) == 2  # query and value of layer 1
        assert row["reachable"] == pytest.approx(mine["fraction"].mean())
        assert row["accuracy"] == pytest.approx(acc[acc["delta"] == row["delta"]]["accuracy"].mean())
    rho = stats.spearmanr(loop["reachable"], loop["accuracy"]).statistic
    text = (out / "results.md").read_text()
    assert "Reachable energy against trained accuracy" in text and f"Spearman ρ = {rho:.3f}" in text
    assert (out / "loop.png").is_file()


def test_console_and_script_help(monkeypatch, capsys):
    from spectral_peft.studies.console import main as console

    assert console(["--help"]) == 0 and "analyze-update" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        console(["analyze-update", "--help"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("usage: spectral-peft analyze-update")
    # the thin script, as a user runs it
    res = subprocess.run([sys.executable, str(REPO / "studies" / "analyze_update.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("usage: python studies/analyze_update.py")
    for option in ("--preset", "--seeds", "--model", "--dataset", "--data-dir", "--layers", "--modules", "--n",
                   "--sources", "--accuracy-from", "--updates-dir", "--out"):
        assert option in res.stdout


@pytest.mark.parametrize("argv, message", [
    (["--sources", "full,adapter"], "unknown update source"),
    (["--bases", "dht,nope"], "unknown basis .nope."),
    (["--bases", "wavelet:bior1.3"], "not orthogonal"),
    (["--deltas", "1.5"], "must lie in"),
])
def test_bad_options_are_clear_errors(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit, match=message):
        analyze(tmp_path / "out", *argv)
