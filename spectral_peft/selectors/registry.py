"""Registry of selectors: ``register_selector`` / ``get_selector`` / ``list_selectors``."""

from __future__ import annotations

from ..registry import Registry
from .base import Selector

SELECTORS: Registry[Selector] = Registry("selector", Selector)


def register_selector(name: str):
    """Class decorator registering a :class:`Selector` subclass as ``name``."""
    return SELECTORS.register(name)


def get_selector(name: str | Selector, **options) -> Selector:
    """An instance of the selector registered as ``name`` (unknown name: ``KeyError`` listing valid ones)."""
    return SELECTORS.get(name, **options)


def list_selectors(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered selectors, optionally filtered by an fnmatch pattern."""
    return SELECTORS.names(pattern)
