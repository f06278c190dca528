"""``SpectralConfig``: everything that defines where and how adapters are injected."""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from typing import Any

from .bases import SpectralBasis, get_basis
from .selectors import Selector, get_selector


@dataclasses.dataclass(frozen=True)
class SpectralConfig:
    """Configuration of spectral adapters, ΔW = alpha · B⁻¹(S) with S nonzero at n positions.

    Attributes:
        basis: registered basis name (``list_bases()``), or a spec such as ``"patchwise:dct:64"``.
        basis_options: keyword options of the basis, e.g. ``{"wavelet": "db4", "level": 2}``.
        selector: registered selector name (``list_selectors()``), or a spec such as ``"band:high"``.
        n: trainable coefficients per adapted layer (1 <= n <= M·N of every target).
        delta: energy ratio δ of selectors that take one (``mixed``); None keeps their default.
        selector_options: further keyword options of the selector.
        alpha: the scale α of ΔW.
        seed: seeds the random part of the selection.
        share_positions: use one set of positions for all targeted layers of the same shape
            (FourierFT's practice). Random draws then use ``torch.Generator().manual_seed(seed)``
            per shape, exactly like FourierFT; energy-based selectors rank the summed energy of
            the group's layers.
        target_modules: module-name suffixes (``["query", "value"]`` matches ``...attention.self.query``)
            or one regular expression string that must match the full module name.
        exclude_modules: suffixes or a regex of modules to leave alone even if targeted.
        modules_to_save: suffixes or a regex of further modules (a classification head, say) that
            stay trainable after :func:`~spectral_peft.inject` and are saved with the adapter by
            :func:`~spectral_peft.save_adapters` (peft's ``modules_to_save``). They are trained in
            place, not copied.
    """

    basis: str = "dht"
    basis_options: dict = dataclasses.field(default_factory=dict)
    selector: str = "mixed"
    n: int = 1000
    delta: float | None = None
    selector_options: dict = dataclasses.field(default_factory=dict)
    alpha: float = 1.0
    seed: int = 0
    share_positions: bool = False
    target_modules: tuple[str, ...] | str = ("query", "value")
    exclude_modules: tuple[str, ...] | str | None = None
    modules_to_save: tuple[str, ...] | str | None = None

    def __post_init__(self):
        # lists are accepted for convenience and stored as tuples so the config stays hashable-ish and immutable
        for field in ("target_modules", "exclude_modules", "modules_to_save"):
            value = getattr(self, field)
            if isinstance(value, list):
                object.__setattr__(self, field, tuple(value))
        object.__setattr__(self, "basis_options", dict(self.basis_options))
        object.__setattr__(self, "selector_options", dict(self.selector_options))
        self._validate()

    def _validate(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be an integer >= 1, got {self.n!r}")
        if self.delta is not None and (
            isinstance(self.delta, bool) or not isinstance(self.delta, (int, float)) or not 0 <= self.delta <= 1
        ):
            raise ValueError(f"delta must be a number in [0, 1] or None, got {self.delta!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha):
            raise ValueError(f"alpha must be a finite number, got {self.alpha!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        _check_patterns("target_modules", self.target_modules, allow_none=False)
        _check_patterns("exclude_modules", self.exclude_modules, allow_none=True)
        _check_patterns("modules_to_save", self.modules_to_save, allow_none=True)
        self.build_basis()
        self.build_selector()

    def build_basis(self) -> SpectralBasis:
        """The configured basis instance."""
        return get_basis(self.basis, **self.basis_options)

    def build_selector(self) -> Selector:
        """The configured selector instance (``delta`` is passed to selectors that take it)."""
        options = dict(self.selector_options)
        if self.delta is not None:
            if not _accepts(self.selector, "delta"):
                raise ValueError(
                    f"delta={self.delta} was given but selector {self.selector!r} takes no delta; "
                    "use selector='mixed' or leave delta=None"
                )
            options["delta"] = self.delta
        return get_selector(self.selector, **options)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SpectralConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SpectralConfig fields {sorted(unknown)}; known fields: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes) -> "SpectralConfig":
        """A copy with ``changes`` applied (the config itself is immutable)."""
        return dataclasses.replace(self, **changes)


def _accepts(selector: str, option: str) -> bool:
    from .selectors import SELECTORS

    return option in inspect.signature(SELECTORS.cls(selector).__init__).parameters


def _check_patterns(field: str, value, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, str):
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"{field}={value!r} is not a valid regular expression: {err}") from err
        return
    if isinstance(value, tuple) and value and all(isinstance(v, str) and v for v in value):
        return
    raise ValueError(
        f"{field} must be a non-empty list of module-name suffixes or one regex string"
        f"{' (or None)' if allow_none else ''}, got {value!r}"
    )


def module_matches(name: str, patterns: tuple[str, ...] | str) -> bool:
    """Whether module ``name`` is matched by suffix list ``patterns`` or the full-match regex ``patterns``."""
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith("." + p) for p in patterns)
