"""Registry of spectral bases: ``register_basis`` / ``get_basis`` / ``list_bases``.

A new basis is one new module in this package with one decorator::

    @register_basis("my_basis")
    class MyBasis(SpectralBasis):
        ...

Every module in :mod:`spectral_peft.bases` is imported when the package is imported, so the
decorator is all it takes; bases defined elsewhere (a notebook, a user's package) register the
same way once their module is imported.
"""

from __future__ import annotations

from ..registry import Registry
from .base import SpectralBasis

BASES: Registry[SpectralBasis] = Registry("basis", SpectralBasis, plural="bases")
_BASES = BASES._classes


def register_basis(name: str):
    """Class decorator registering a :class:`SpectralBasis` subclass as ``name`` (taken name: ``ValueError``)."""
    return BASES.register(name)


def unregister_basis(name: str) -> None:
    """Remove ``name`` from the registry (for notebooks and tests that register temporary bases)."""
    BASES.unregister(name)


def list_bases(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered bases, optionally filtered by an fnmatch ``pattern`` ("dht*")."""
    return BASES.names(pattern)


def get_basis(name: str | SpectralBasis, **options) -> SpectralBasis:
    """An instance of the basis registered as ``name``, built with ``options``.

    An existing :class:`SpectralBasis` instance is returned unchanged (options must be empty).
    Raises ``KeyError`` listing the valid names for an unknown ``name``.
    """
    return BASES.get(name, **options)
