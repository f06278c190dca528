"""Coefficient selectors: which n of the M·N positions of B(W0) are trainable.

Every module in this package registers its selectors on import (``@register_selector("name")`` on a
:class:`Selector` subclass), so a new selector is one new module here and nothing else.
"""

import importlib
import pkgutil

from .base import Selector, check_count, top_by_energy, uniform_without_replacement
from .registry import SELECTORS, get_selector, list_selectors, register_selector

_INFRASTRUCTURE = {"base", "registry"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "SELECTORS", "Selector", "check_count", "get_selector", "list_selectors", "register_selector",
    "top_by_energy", "uniform_without_replacement",
]
