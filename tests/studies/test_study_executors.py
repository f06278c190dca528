"""The smoke study through Ray (a local Ray, 2 CPUs) and SLURM (submitit's local executor) gives the
local executor's results row for row; killing the driver mid-grid and rerunning loses and duplicates
nothing; a run that raises in a worker is recorded with its traceback and retried; SIGTERM stops a driver
that started its own Ray like Ctrl-C."""
import json
import os
import signal
import time

import pandas as pd
import pytest
import ray  # the cluster extra, which the dev extra includes

from .helpers import load_study, run  # noqa: I001  (puts the repo root on sys.path)

pytestmark = pytest.mark.timeout(400)

ARGS = ("--epochs", "3")  # 3 deltas + head + lora = 5 runs


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    assert run(load_study("ablate_delta"), out, *ARGS) == 0
    return _rows(out)


def _rows(out):
    df = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    timing = ["wall_time_s"]  # seconds measure machine load, not the run
    return df.drop(columns=timing).sort_values("run_key").reset_index(drop=True)


def _kill_driver_after(monkeypatch, rows):
    """SIGTERM this process (the driver) right after results.csv is written with ``rows`` runs.

    The signal is sent from the driver's own write, not from a polling thread: a thread could be late
    on a loaded machine and signal after the study had finished and put back the previous handler.
    """
    from spectral_peft.studies import runner

    write = runner._write_rows

    def write_then_signal(path, all_rows):
        write(path, all_rows)
        if len(all_rows) >= rows:
            monkeypatch.setattr(runner, "_write_rows", write)  # once
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(runner, "_write_rows", write_then_signal)


@pytest.mark.parametrize("executor", [
    ("--executor", "ray"),
    ("--executor", "slurm", "--slurm-cluster", "local", "--max-jobs", "2", "--runs-per-job", "2"),
], ids=["ray", "slurm"])
def test_executor_matches_local_and_resumes(executor, reference, local_ray, tmp_path, monkeypatch):
    study, out = load_study("ablate_delta"), tmp_path / "out"
    _kill_driver_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(study, out, *ARGS, *executor)
    first = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and 2 <= len(first) < len(reference)
    assert manifest["executor"]["name"] == executor[1]

    assert run(study, out, *ARGS, *executor) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["runs"]["done_before"] == len(first)
    assert manifest["runs"]["completed_now"] == len(reference) - len(first)
    pd.testing.assert_frame_equal(_rows(out), reference)  # nothing lost, nothing twice, same numbers


def test_a_run_that_raises_in_a_worker_is_recorded_and_retried(local_ray, tmp_path):
    study, out = load_study("ablate_delta"), tmp_path / "out"
    # the driver never builds an adapter, so this bad option first fails inside the Ray worker
    args = ("--values", "0.5", "--references", "none", "--basis-options", '{"no_such_option": 1}',
            "--executor", "ray")
    for attempt in range(2):
        assert run(study, out, *args) == 1
        df = pd.read_csv(out / "results.csv", keep_default_na=False)
        assert len(df) == 1 and df["status"].iloc[0].startswith("error: TypeError")
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["runs"]["completed_now"] == 1  # retried, not skipped
        assert "Traceback" in manifest["errors"][0]["traceback"]
        assert "no_such_option" in manifest["errors"][0]["traceback"]


def test_sigterm_stops_a_study_that_started_its_own_ray_like_ctrl_c(tmp_path):
    """``kill PID`` of a driver that started Ray itself: ray.init installs a handler that kills the process
    outright, so the executor puts the study's back; the manifest says "interrupted" and rows stay."""
    import subprocess
    import sys

    from .helpers import REPO

    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "studies" / "ablate_delta.py"), "--preset", "smoke", "--out", str(out),
           "--quiet", *ARGS, "--executor", "ray", "--ray-num-cpus", "1"]
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    csv_path = out / "results.csv"
    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None:
        if csv_path.is_file() and len(pd.read_csv(csv_path)) >= 1:
            break
        time.sleep(0.1)
    assert driver.poll() is None, "the study finished before it could be signalled: " + driver.stdout.read()
    driver.send_signal(signal.SIGTERM)
    output = driver.communicate(timeout=120)[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert driver.returncode == 130, output
    assert manifest["status"] == "interrupted"
    assert 1 <= len(pd.read_csv(csv_path)) < 5
