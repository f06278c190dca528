"""Executors: how the runs of a study are spread out (in-process, Ray tasks, SLURM jobs via submitit).

Every module in this package registers its executor on import (``@register_executor("name")`` on an
:class:`Executor` subclass), so a new engine is one new module here. An executor only runs
``execute_run(setup, run)`` somewhere and yields ``(run, row)`` pairs as runs finish; the driver
alone writes results, so resume and determinism hold for every executor.
"""

import importlib
import pkgutil

from .base import EXECUTORS, Executor, get_executor, list_executors, register_executor

_INFRASTRUCTURE = {"base"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["EXECUTORS", "Executor", "get_executor", "list_executors", "register_executor"]
