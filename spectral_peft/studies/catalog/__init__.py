"""The named studies: every module in this package that defines ``STUDY`` (a grid of training runs,
:class:`~spectral_peft.studies.runner.Study`) or ``COMMAND`` (any other study: an object with
``name``, ``title`` and ``main(argv, prog)``) is one study.

A new study is one new module here; it is discovered automatically, gets a ``spectral-peft <name>``
subcommand (underscores become dashes) and can be wrapped by a thin script in the repository's
``studies/`` folder.
"""
from __future__ import annotations

import importlib
import pkgutil


def _discover(attribute: str) -> dict:
    found = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        entry = getattr(module, attribute, None)
        if entry is not None:
            found[entry.name] = entry
    return dict(sorted(found.items()))


def studies() -> dict:
    """``{name: Study}`` for every module of this package that defines ``STUDY``, sorted by name."""
    return _discover("STUDY")


def commands() -> dict:
    """``{name: study}`` for every study: the grid studies (``STUDY``) and the others (``COMMAND``)."""
    return dict(sorted({**studies(), **_discover("COMMAND")}.items()))
