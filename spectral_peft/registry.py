"""A small named-class registry shared by bases and selectors (timm-style).

``Registry.register(name)`` is a class decorator (a taken name is an error), ``get(name,
**options)`` builds an instance (an unknown name is an error listing the valid ones) and
``names(pattern)`` lists the sorted names, optionally filtered by an fnmatch pattern.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to subclasses of ``base``; ``kind`` names the thing in error messages."""

    def __init__(self, kind: str, base: type[T], plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.base = base
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(cls: type[T]) -> type[T]:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(
                    f"register_{self.kind}({name!r}) must decorate a {self.base.__name__} subclass, got {cls!r}"
                )
            if name in self._classes:
                taken = self._classes[name]
                raise ValueError(
                    f"a {self.kind} named {name!r} is already registered ({taken.__module__}."
                    f"{taken.__qualname__}); choose another name or unregister_{self.kind}({name!r}) first"
                )
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorator

    def unregister(self, name: str) -> None:
        if name not in self._classes:
            raise KeyError(f"no {self.kind} named {name!r} is registered; registered: {', '.join(self.names())}")
        del self._classes[name]

    def names(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._classes)
        if pattern is not None:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return names

    def get(self, name, **options) -> T:
        if isinstance(name, self.base):
            if options:
                raise ValueError(f"options cannot be given together with a {self.base.__name__} instance")
            return name
        if not isinstance(name, str) or name not in self._classes:
            raise KeyError(f"unknown {self.kind} {name!r}; registered {self.plural}: {', '.join(self.names())}")
        try:
            return self._classes[name](**options)
        except TypeError as err:
            raise TypeError(f"invalid options {options} for {self.kind} {name!r}: {err}") from err
