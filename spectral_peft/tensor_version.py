"""The version of a tensor for cache keys, inference tensors included.

Caches of derived values (ΔW, W0 + ΔW, a route's plan, a shared transform) are keyed on the
``_version`` counter of the tensors they derive from, which every in-place change bumps. A tensor
made under ``torch.inference_mode`` keeps no counter (reading it raises); its key is then a fresh
object, equal to no other, so a value derived from it is recomputed on every call instead of
being served stale.
"""

from __future__ import annotations

import torch


def version(tensor: torch.Tensor) -> object:
    """``tensor._version``, or for an inference tensor an object equal to nothing else."""
    return object() if tensor.is_inference() else tensor._version
