"""Spectral bases: every module in this package registers its bases on import.

A new basis is one new module here with ``@register_basis("name")`` on a
:class:`SpectralBasis` subclass; it is discovered automatically.
"""

import importlib
import pkgutil

from .base import SpectralBasis
from .registry import get_basis, list_bases, register_basis, unregister_basis

_INFRASTRUCTURE = {"base", "registry"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SpectralBasis", "get_basis", "list_bases", "register_basis", "unregister_basis"]
