"""The compiled Walsh–Hadamard transform (``wht.c``) along the last dimension of float32 CPU arrays.

torch has no fast Hadamard transform; the operator's torch route multiplies by small Hadamard
factors (Sylvester's H_n = H_a ⊗ H_b), Σ f_i multiply-adds per value. The kernel runs the
log2(n) add/subtract butterflies instead, on 8 tokens at a time in cache, and can write its result
transposed (feature-major), which the 2-D transform of the merged route needs anyway.
"""

from __future__ import annotations

import ctypes

import torch

from . import library

_ARGS = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p,
         ctypes.c_int64, ctypes.c_int, ctypes.c_int]


def hadamard(x: torch.Tensor, scale: float, transposed: bool = False) -> torch.Tensor | None:
    """scale · H_n applied to the rows of x (..., n), H_n the Sylvester Hadamard matrix (n a power
    of two), or None where the kernel does not apply (:func:`.library.usable`). With
    ``transposed`` (x 2-D, T × n) the result is returned as the n × T array (H_n xᵀ) · scale."""
    n = x.shape[-1] if x.dim() else 0
    if n < 1 or n & (n - 1) or not library.usable(x) or (transposed and x.dim() != 2):
        return None
    rows = library.rows(x)
    tokens = rows.shape[0]
    out = torch.empty((n, tokens) if transposed else (tokens, n), dtype=torch.float32)
    status = library.function("wht_f32", _ARGS)(
        rows.data_ptr(), rows.stride(0), tokens, n, scale, out.data_ptr(), out.stride(0), int(transposed),
        library.threads())
    if status != 0:  # -1: out of memory
        return None
    return out if transposed else out.reshape(x.shape)
