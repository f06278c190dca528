"""The factorial sweep: the cross product, dropped non-applicable axes, resume, determinism, the
named studies as one-axis sweeps, separate seed streams and the provenance guard."""
import json

import pandas as pd
import pytest
import torch

from .helpers import load_study, run  # noqa: I001  (puts the repo root on sys.path)
from spectral_peft.studies.grid import grid_points, parse_baseline, parse_grid  # noqa: E402
from spectral_peft.studies import runner  # noqa: E402
from spectral_peft.studies.runner import _run_key, derive_seeds  # noqa: E402

pytestmark = pytest.mark.timeout(600)

DEFAULTS = {"basis": "dht", "selector": "mixed", "n": 64, "delta": 0.7, "alpha": 1.0}
FAST = ("--max-steps", "4")


def test_cross_product_drops_axes_that_do_not_apply():
    grid = parse_grid(["basis=dht,dct", "selector=energy,random,mixed", "delta=0.3,0.7"])
    points = grid_points(grid, DEFAULTS)
    # per basis: energy and random once (no δ), mixed once per δ -> 4, not 3 × 2 = 6
    assert len(points) == 8
    assert [(p["basis"], p["selector"], p["delta"]) for p in points[:4]] == [
        ("dht", "energy", None), ("dht", "random", None), ("dht", "mixed", 0.3), ("dht", "mixed", 0.7)]
    assert all(p["n"] == 64 and p["alpha"] == 1.0 for p in points)
    assert len(grid_points(parse_grid(["n=16,64,256", "alpha=0.5,1"]), DEFAULTS)) == 6


@pytest.mark.parametrize("items, message", [
    (["depth=1,2"], "unknown grid axis"), (["n=a,b"], "takes int"), (["basis"], "AXIS=V1,V2"),
    (["n=1,1"], "repeats"), (["n=1", "n=2"], "twice")])
def test_bad_grids_are_refused(items, message, capsys):
    with pytest.raises(SystemExit) as err:
        parse_grid(items)
    assert message in str(err.value)


def test_baseline_spec():
    grid = {"delta": [0.0, 0.7]}
    assert parse_baseline(None, grid) == {"delta": 0.0}
    assert parse_baseline("0.7", grid) == {"delta": 0.7}
    assert parse_baseline("selector=random,basis=dht", grid) == {"selector": "random", "basis": "dht"}


def test_seed_streams_are_separate_and_derived():
    a, b = derive_seeds(0), derive_seeds(1)
    assert a == derive_seeds(0) and len({*a.values()}) == 3 and all(a[k] != b[k] for k in a)
    held = derive_seeds(1, {"position": 5})
    assert held["position_seed"] == 5 and held["init_seed"] == b["init_seed"]


def test_held_position_seed_keeps_positions_and_varies_the_init():
    from spectral_peft.studies.data import make_smoke_dataset
    from spectral_peft.studies.methods import build_model
    from spectral_peft.studies.model import load_backbone

    ds = make_smoke_dataset()
    bb = load_backbone("tiny-bert", train_texts=ds["train"].texts)
    run_cfg = dict(method="spectral", basis="dht", selector="random", n=16, delta=None, alpha=1.0,
                   layers=[1], modules=["query"])
    models = [build_model(bb.model, 4, dict(run_cfg, **derive_seeds(s, {"position": 3})), derive_seeds(s)["init_seed"])[0]
              for s in (0, 1)]
    pos = [[b for n, b in m.named_buffers() if n.endswith("positions")][0] for m in models]
    assert torch.equal(pos[0], pos[1])
    assert not torch.equal(models[0].head.weight, models[1].head.weight)
    free = build_model(bb.model, 4, dict(run_cfg, **derive_seeds(1)), derive_seeds(1)["init_seed"])[0]
    assert not torch.equal([b for n, b in free.named_buffers() if n.endswith("positions")][0], pos[0])


def _rows(out):
    return pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)


def test_sweep_runs_the_grid_resumes_and_repeats(tmp_path):
    sweep = load_study("sweep")
    a, b = tmp_path / "a", tmp_path / "b"
    args = ("--grid", "selector=random,mixed", "delta=0.3,0.7", "--seeds", "0", "1", *FAST)
    assert run(sweep, a, *args) == 0
    df = _rows(a)
    spectral = df[df["method"] == "spectral"]
    assert list(zip(spectral["selector"], spectral["delta"]))[:3] == [("random", ""), ("mixed", "0.3"), ("mixed", "0.7")]
    assert len(df) == 2 * (3 + 2)  # 3 points + head + LoRA per seed
    text = (a / "results.md").read_text()
    assert "Marginal over the other axes: selector" in text and (a / "sweep.png").is_file()
    # resume: nothing left to do, then only the new level runs
    assert run(sweep, a, *args) == 0
    assert json.loads((a / "manifest.json").read_text())["runs"]["completed_now"] == 0
    assert run(sweep, a, "--grid", "selector=random,mixed", "delta=0.3,0.7,1.0", "--seeds", "0", "1", *FAST) == 0
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["runs"]["completed_now"] == 2 and len(_rows(a)) == 12
    # determinism: a fresh folder gets the same rows but for wall time
    assert run(sweep, b, *args) == 0
    drop = ["wall_time_s"]  # timings measure machine load
    pd.testing.assert_frame_equal(_rows(b).drop(columns=drop), df.drop(columns=drop))


@pytest.mark.parametrize("name, values, grid", [
    ("ablate_delta", "0,1", ["delta=0,1", "selector=mixed"]),
    ("ablate_basis", "dht,dct", ["basis=dht,dct"]),
    ("ablate_n", "16,256", ["n=16,256"]),
])
def test_named_study_equals_its_sweep(tmp_path, name, values, grid):
    named, sweep = tmp_path / "named", tmp_path / "sweep"
    assert run(load_study(name), named, "--values", values, *FAST) == 0
    assert run(load_study("sweep"), sweep, "--grid", *grid, *FAST) == 0
    drop = ["study", "wall_time_s"]
    pd.testing.assert_frame_equal(_rows(named).drop(columns=drop), _rows(sweep).drop(columns=drop))


def test_mixed_provenance_is_refused_unless_allowed(tmp_path):
    study = load_study("ablate_delta")
    out = tmp_path / "out"
    args = ("--values", "0.5", "--references", "none", *FAST)
    assert run(study, out, *args) == 0
    rows = _rows(out)
    prov = json.loads((out / "provenance.json").read_text())
    (entry,) = prov.values()
    older = dict(entry, commit="0" * 40, packages=dict(entry["packages"], torch="0.0.1"))
    prov["feedfacecafe"] = older
    (out / "provenance.json").write_text(json.dumps(prov))
    rows.assign(provenance="feedfacecafe").to_csv(out / "results.csv", index=False)
    with pytest.raises(SystemExit) as err:
        run(study, out, *args, "--seeds", "0", "1")
    assert "torch 0.0.1 ->" in str(err.value) and "git commit 0000" in str(err.value)
    assert run(study, out, *args) == 0  # nothing to append: no refusal
    assert run(study, out, *args, "--seeds", "0", "1", "--allow-mixed") == 0
    assert sorted(set(_rows(out)["provenance"])) == sorted(["feedfacecafe", *prov.keys() - {"feedfacecafe"}])
    # rows from before provenance was recorded
    _rows(out).drop(columns=["provenance"]).to_csv(out / "results.csv", index=False)
    with pytest.raises(SystemExit, match="unknown provenance"):
        run(study, out, *args, "--seeds", "0", "1", "2")


def test_a_study_can_change_its_preset_defaults_and_options_still_win():
    """The selector study runs 10 quick seeds (7 Holm comparisons need 2/2^k < 0.05/7) against random."""
    from spectral_peft.studies.cli import build_parser, resolve
    from spectral_peft.studies.presets import PRESETS

    selector, delta = load_study("ablate_selector"), load_study("ablate_delta")
    for study, seeds in ((selector, list(range(10))), (delta, PRESETS["quick"]["seeds"])):
        cfg = resolve(study, build_parser(study).parse_args([]))
        assert cfg["seeds"] == seeds
        assert 2 / 2 ** len(cfg["seeds"]) < 0.05 / (len(cfg["values"]) - 1)  # the sign-flip test can reach Holm
    assert resolve(selector, build_parser(selector).parse_args(["--seeds", "3", "4"]))["seeds"] == [3, 4]
    assert selector.default_baseline({"selector": []}) == "selector=random"
    assert PRESETS["quick"]["seeds"] == list(range(8))  # the shared preset is untouched


def test_alpha_scaling_gives_each_n_its_own_alpha(tmp_path, monkeypatch):
    """--alpha-scaling sqrt: each run trains with α·sqrt(n0/n) (n0 = the preset's n, 64 on smoke);
    rows keep the nominal α and say the rule, so the baseline and the marginals still pair points."""
    from spectral_peft.studies.methods import effective_alpha

    sweep = load_study("sweep")
    scaled, plain = tmp_path / "scaled", tmp_path / "plain"
    args = ("--grid", "n=16,64,256", "--references", "none", "--alpha", "0.5", "--seeds", "0", "1", *FAST)
    assert run(sweep, scaled, *args, "--alpha-scaling", "sqrt") == 0
    assert run(sweep, plain, *args) == 0
    rows, plain_rows = _rows(scaled), _rows(plain)
    assert set(rows["alpha"].astype(float)) == set(plain_rows["alpha"].astype(float)) == {0.5}
    assert set(rows["alpha_scaling"]) == {"sqrt:64"} and set(plain_rows["alpha_scaling"]) == {"none"}
    assert [effective_alpha(r) for r in rows.to_dict("records")][:3] == [1.0, 0.5, 0.25]
    assert json.loads((scaled / "manifest.json").read_text())["config"]["alpha_scaling"] == "sqrt"
    # the effective α reaches the model: at n = 64 (α unchanged) the runs are the same, elsewhere not
    same_n = rows["n"] == "64"
    assert list(rows[same_n]["train_loss"]) == list(plain_rows[same_n]["train_loss"])
    assert (rows[~same_n]["train_loss"] != plain_rows[~same_n]["train_loss"]).all()
    # scaled runs are other runs; unscaled ones keep the keys they had before the column existed
    assert set(rows["run_key"]) & set(plain_rows["run_key"]) == set()
    run_ = {"method": "spectral", "basis": "dht", "n": 64, "alpha": 0.5, "seed": 0}
    unscaled, scaled_key = _run_key({**run_, "alpha_scaling": "none"}), _run_key({**run_, "alpha_scaling": "sqrt:64"})
    monkeypatch.setattr(runner, "CONFIG_COLUMNS", [c for c in runner.CONFIG_COLUMNS if c != "alpha_scaling"])
    assert _run_key(run_) == unscaled != scaled_key  # the key the run had before the column existed
    summary = pd.read_csv(scaled / "summary.csv", keep_default_na=False)
    assert list(summary["baseline_point"]) == ["", "n=16", "n=16"]


def test_bad_alpha_scaling_in_a_row_is_refused():
    from spectral_peft.studies.methods import effective_alpha

    assert effective_alpha({"alpha": 2.0, "n": 100, "alpha_scaling": "sqrt:400"}) == 4.0
    assert effective_alpha({"alpha": 2.0, "n": 100}) == 2.0
    with pytest.raises(ValueError, match="expected 'none' or 'sqrt:<n0>'"):
        effective_alpha({"alpha": 2.0, "n": 100, "alpha_scaling": "cube"})
