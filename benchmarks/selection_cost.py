"""Cost of choosing positions, per selector, on a study preset: seconds and peak memory.

    python benchmarks/selection_cost.py                      # quick preset: MiniLM + TREC, layers 4-5
    python benchmarks/selection_cost.py --preset smoke --selectors energy,learned

Each selector runs in its own fresh process (``ru_maxrss`` is a per-process high-water mark), after
the backbone, data and a fresh classifier are loaded exactly as the studies load them; the report
is the time ``build_model`` spends in ``inject`` (``selection_time_s``) and the growth of the peak
resident memory during it, side by side for every selector in one table.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(preset: str, selector: str, seed: int) -> dict:
    import torch

    from spectral_peft.studies.cache import TokenView
    from spectral_peft.studies.data import load_dataset, subsample
    from spectral_peft.studies.methods import build_model, calibration_batches
    from spectral_peft.studies.model import encode_texts, load_backbone
    from spectral_peft.studies.presets import PRESETS

    torch.set_num_threads(1)
    cfg = PRESETS[preset]
    ds = load_dataset(cfg["dataset"])
    train, _ = subsample(ds["train"], cfg["train_size"], cfg["data_seed"], stratified=True)
    backbone = load_backbone(cfg["backbone"], train_texts=train.texts, seed=cfg["data_seed"])
    tokens = TokenView(*encode_texts(backbone.tokenizer, train.texts, cfg["max_len"]))
    calibration = calibration_batches(tokens, train.labels, cfg["batch_size"], seed)
    run = dict(method="spectral", basis=cfg["basis"], selector=selector, n=cfg["n"], alpha=cfg["alpha"],
               layers=cfg["layers"], modules=cfg["modules"], delta=None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, counts = build_model(backbone.model, ds.num_labels, run, seed, calibration)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"selector": selector, "selection_time_s": counts["selection_time_s"],
            "peak_rss_growth_mb": round((after - before) / 1024, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick", help="study preset (smoke, quick, full); default quick")
    parser.add_argument("--selectors", default="energy,random,mixed:0.7,band:low,gradient,learned",
                        help="comma-separated selectors or specs to compare")
    parser.add_argument("--seed", type=int, default=0, help="run seed (calibration order, noise); default 0")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one selector in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.preset, args.one, args.seed)))
        return 0
    rows = []
    for selector in args.selectors.split(","):
        out = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--seed", str(args.seed),
                              "--one", selector], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"measured {selector}", file=sys.stderr)
    base = rows[0]
    print(f"| selector | selection s | × {base['selector']} | peak RSS growth MB |")
    print("|---|---|---|---|")
    for r in rows:
        ratio = r["selection_time_s"] / max(base["selection_time_s"], 1e-3)
        print(f"| {r['selector']} | {r['selection_time_s']:.3f} | {ratio:.0f}× | {r['peak_rss_growth_mb']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
