"""The named studies: every module in this package that defines ``STUDY`` is one study.

A new study is one new module here with a ``STUDY = Study(...)``; it is discovered automatically,
gets a ``spectral-peft <name>`` subcommand (underscores become dashes) and can be wrapped by a thin
script in the repository's ``studies/`` folder.
"""
from __future__ import annotations

import importlib
import pkgutil


def studies() -> dict:
    """``{name: Study}`` for every module of this package that defines ``STUDY``, sorted by name."""
    found = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        study = getattr(module, "STUDY", None)
        if study is not None:
            found[study.name] = study
    return dict(sorted(found.items()))
