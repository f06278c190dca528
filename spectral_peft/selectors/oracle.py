"""``oracle`` (a positive control): the top-n positions of |B(ΔW)|² of a stored real update ΔW.

The updates come from a safetensors file whose keys are the full module names of the adapted
layers (the names ``inject`` targets, e.g. ``backbone.encoder.layer.5.attention.self.query``),
each holding ΔW as a float32 out × in tensor (what ``studies/analyze_update.py`` saves, typically
from a run with another seed). It answers whether choosing positions can change accuracy at all.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from .base import Selector, check_count, top_by_energy
from .registry import register_selector


@functools.lru_cache(maxsize=4)
def _load_updates(path: str, mtime: float) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


@register_selector("oracle")
class OracleSelector(Selector):
    """Top-n positions by |B(ΔW)|² of the stored update of the same layer.

    Args:
        updates: path of the safetensors file (module name → ΔW, out × in).
    """

    uses_generator = False

    def __init__(self, updates: str | os.PathLike | None = None):
        if updates is not None and not isinstance(updates, (str, os.PathLike)):
            raise TypeError(f"updates must be a path, got {type(updates).__name__}")
        self.updates = None if updates is None else str(updates)

    def options(self) -> dict:
        return {"updates": self.updates}

    def stored_updates(self) -> dict[str, torch.Tensor]:
        if self.updates is None:
            raise ValueError(
                "the oracle selector needs the stored updates: selector_options={'updates': 'path/to/updates.safetensors'} "
                "(a safetensors file of module name -> ΔW, as studies/analyze_update.py saves), or the spec 'oracle:PATH'"
            )
        path = Path(self.updates)
        if not path.is_file():
            raise FileNotFoundError(f"oracle selector: no updates file at {self.updates!r}")
        return _load_updates(str(path.resolve()), path.stat().st_mtime)

    def layer_scores(self, context):
        updates = self.stored_updates()
        scores = {}
        for name in context.targets:
            if name not in updates:
                stored = sorted(updates)
                raise ValueError(
                    f"oracle selector: {self.updates!r} has no update for layer {name!r}; it holds "
                    f"{len(stored)} layers: {', '.join(stored[:8])}{', ...' if len(stored) > 8 else ''}"
                )
            delta = updates[name]
            shape = context.shape(name)
            if tuple(delta.shape) != shape:
                raise ValueError(
                    f"oracle selector: the stored update of {name!r} is {tuple(delta.shape)} but the layer is "
                    f"{shape[0]}x{shape[1]} (out x in)"
                )
            delta = delta.to(torch.promote_types(delta.dtype, torch.float32))
            if not torch.isfinite(delta).all():
                raise ValueError(f"oracle selector: the stored update of {name!r} has NaN or inf entries")
            scores[name] = context.basis.forward(delta) ** 2
        return scores

    def select(self, scores, shape, n, generator):
        check_count(n, shape)
        return torch.sort(top_by_energy(scores, n)).values
