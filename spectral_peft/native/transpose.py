"""The compiled transpose (``transpose.c``) of 2-D float32 CPU arrays.

The 2-D build of ΔW (:meth:`spectral_peft.factorization.Factorization.dense_from_values`)
transposes one dense intermediate between the transforms of its two axes. ``x.T.contiguous()``
copies element by element; the kernel moves 32 × 32 tiles as 8 × 8 register transposes on torch's
threads. Measured on a 2-core x86 CPU, with its output's allocation: 1,026 × 1,024 0.47–0.67 ms
against 2.2–2.4 ms (0.8 ms on a quieter hour), 1,538 × 384 0.13 ms against 0.82 ms.
"""

from __future__ import annotations

import ctypes

import torch

from . import library

_ARGS = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]


def transposed(x: torch.Tensor) -> torch.Tensor | None:
    """``x.T`` as a new contiguous array for a 2-D x with contiguous rows, or None where the kernel
    does not apply (:func:`.library.usable`, not 2-D)."""
    if x.dim() != 2 or not library.usable(x):
        return None
    src = library.rows(x)
    rows, cols = src.shape
    out = torch.empty(cols, rows, dtype=torch.float32)
    library.function("transpose_f32", _ARGS)(src.data_ptr(), src.stride(0), rows, cols, out.data_ptr(), out.stride(0), library.threads())
    return out
