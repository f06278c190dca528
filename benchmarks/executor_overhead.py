"""Per-run overhead of the Ray executor against the local one, on the smoke study, in one process.

    python benchmarks/executor_overhead.py              # 3 rounds of 5 runs per executor

Both executors run the same smoke grid (tiny random BERT, 5 runs) one run at a time (a local Ray
with one CPU, so its tasks run serially like the local executor's), alternating local and Ray in
every round so that load drift on a shared machine hits both alike. Ray's start-up is timed apart
from the study. Reported per run: median study wall time / runs for each executor, and the
difference (Ray's per-run overhead: scheduling, serialization, the worker's first model load).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds of (local, ray) (default: 3)")
    args = p.parse_args()
    import ray

    from spectral_peft.studies import run_study
    from spectral_peft.studies.catalog import studies

    study = studies()["ablate_delta"]
    t0 = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t0
    times: dict[str, list[float]] = {"local": [], "ray": []}
    runs = 5
    try:
        for r in range(args.rounds):
            for executor in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
                with tempfile.TemporaryDirectory() as out:
                    t = time.perf_counter()
                    code = run_study(study, ["--preset", "smoke", "--out", out, "--quiet", "--executor", executor])
                    times[executor].append((time.perf_counter() - t) / runs)
                    assert code == 0
    finally:
        ray.shutdown()
    local, remote = statistics.median(times["local"]), statistics.median(times["ray"])
    print(f"ray.init (local Ray, once per study): {startup:.2f} s")
    print(f"{'executor':<8} {'s/run (median)':>15} {'all rounds':>30}")
    for name in ("local", "ray"):
        print(f"{name:<8} {statistics.median(times[name]):>15.3f} {', '.join(f'{x:.2f}' for x in times[name]):>30}")
    print(f"ray per-run overhead: {remote - local:+.3f} s ({remote / local:.2f}x local); first round includes "
          "the Ray worker's imports and model load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
