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

import fnmatch
from typing import Callable, TypeVar

from .base import SpectralBasis

_BASES: dict[str, type[SpectralBasis]] = {}

T = TypeVar("T", bound=type[SpectralBasis])


def register_basis(name: str) -> Callable[[T], T]:
    """Class decorator that registers a :class:`SpectralBasis` subclass under ``name``.

    Raises ``ValueError`` if ``name`` is already taken, and ``TypeError`` if the decorated
    object is not a ``SpectralBasis`` subclass.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"basis name must be a non-empty string, got {name!r}")

    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, SpectralBasis)):
            raise TypeError(f"@register_basis({name!r}) must decorate a SpectralBasis subclass, got {cls!r}")
        if name in _BASES:
            raise ValueError(
                f"a basis named {name!r} is already registered ({_BASES[name].__module__}."
                f"{_BASES[name].__qualname__}); choose another name or unregister_basis({name!r}) first"
            )
        cls.name = name
        _BASES[name] = cls
        return cls

    return decorator


def unregister_basis(name: str) -> None:
    """Remove ``name`` from the registry (for notebooks and tests that register temporary bases)."""
    if name not in _BASES:
        raise KeyError(f"no basis named {name!r} is registered; registered bases: {', '.join(list_bases())}")
    del _BASES[name]


def list_bases(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered bases, optionally filtered by an fnmatch ``pattern`` ("dht*")."""
    names = sorted(_BASES)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def get_basis(name: str | SpectralBasis, **options) -> SpectralBasis:
    """An instance of the basis registered as ``name``, built with ``options``.

    An existing :class:`SpectralBasis` instance is returned unchanged (options must be empty).
    Raises ``KeyError`` listing the valid names for an unknown ``name``.
    """
    if isinstance(name, SpectralBasis):
        if options:
            raise ValueError("options cannot be given together with a SpectralBasis instance")
        return name
    if name not in _BASES:
        raise KeyError(f"unknown basis {name!r}; registered bases: {', '.join(list_bases())}")
    cls = _BASES[name]
    try:
        return cls(**options)
    except TypeError as err:
        raise TypeError(f"invalid options {options} for basis {name!r}: {err}") from err
