"""A small named-class registry shared by bases and selectors (timm-style).

``Registry.register(name)`` is a class decorator (a taken name is an error), ``get(name,
**options)`` builds an instance (an unknown name is an error listing the valid ones) and
``names(pattern)`` lists the sorted names, optionally filtered by an fnmatch pattern.

Specs: ``get`` also takes ``"name:arg:arg…"``, the constructor's positional arguments after a
colon each (``"patchwise:dct:64"`` is ``patchwise(inner="dct", block=64)``, ``"mixed:0.7"`` is
``mixed(delta=0.7)``, ``"band:high"``), so one string on a command line or in a results table
names a configured entry. Arguments read as int, float, true/false/none, else as a string.
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
SPEC_SEPARATOR = ":"


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
        if SPEC_SEPARATOR in name:
            raise ValueError(f"{self.kind} name {name!r} must not contain {SPEC_SEPARATOR!r} (it separates spec arguments)")

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

    def cls(self, name: str) -> type[T]:
        """The class registered as ``name`` (or as the name of spec ``name``)."""
        base_name = name.split(SPEC_SEPARATOR, 1)[0] if isinstance(name, str) else name
        if not isinstance(base_name, str) or base_name not in self._classes:
            raise KeyError(f"unknown {self.kind} {name!r}; registered {self.plural}: {', '.join(self.names())}")
        return self._classes[base_name]

    def parse(self, spec: str) -> tuple[str, dict]:
        """``"name:a:b"`` -> ``("name", {first_param: a, second_param: b})`` (see the module docstring)."""
        name, *args = spec.split(SPEC_SEPARATOR)
        params = [
            p.name for p in inspect.signature(self.cls(name).__init__).parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if len(args) > len(params):
            raise ValueError(
                f"{self.kind} spec {spec!r} has {len(args)} arguments but {name!r} takes at most "
                f"{len(params)}: {', '.join(params) or '(none)'}"
            )
        return name, {param: _read_argument(arg) for param, arg in zip(params, args)}

    def get(self, name, **options) -> T:
        if isinstance(name, self.base):
            if options:
                raise ValueError(f"options cannot be given together with a {self.base.__name__} instance")
            return name
        if isinstance(name, str) and SPEC_SEPARATOR in name:
            name, from_spec = self.parse(name)
            twice = sorted(set(from_spec) & set(options))
            if twice:
                raise ValueError(f"{self.kind} options {twice} are given both in the spec and as options")
            options = {**from_spec, **options}
        if not isinstance(name, str) or name not in self._classes:
            raise KeyError(f"unknown {self.kind} {name!r}; registered {self.plural}: {', '.join(self.names())}")
        try:
            return self._classes[name](**options)
        except TypeError as err:
            raise TypeError(f"invalid options {options} for {self.kind} {name!r}: {err}") from err


def _read_argument(text: str):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
