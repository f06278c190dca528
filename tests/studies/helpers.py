"""Helpers shared by the study tests."""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from spectral_peft.studies.catalog import studies as _catalog  # noqa: E402

STUDIES = tuple(_catalog())


def load_study(name: str):
    """Import studies/<name>.py as a module and return its STUDY."""
    spec = importlib.util.spec_from_file_location(f"_study_{name}", REPO / "studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDY


def run(study, out, *extra):
    """Run a study in-process on the smoke preset (extra CLI options appended)."""
    from spectral_peft.studies import run_study

    return run_study(study, ["--preset", "smoke", "--out", str(out), "--quiet", *extra])
