"""The compiled periodized DWT cascade (``dwt.c``) along the last dimension of float32 CPU arrays.

torch has no strided filter bank for token-major arrays, so the operators' torch route gathers
windows of the signal (``index_select``) and multiplies them by a small matrix, once per level.
The kernel instead copies 8 tokens at a time feature-major into cache and runs every level there,
one 8-wide multiply-add per filter tap. Measured on a 2-core x86 CPU (one kernel thread against
torch's ops on two) for the db4 cascade of a token chunk: analysis 0.35 ms against 1.0–1.9 ms at
682 tokens × 384 features (5 levels), synthesis 0.48 ms against 2.0–3.5 ms; about 4× at 1,024
and 4,096 features.

Layout (shared with :class:`spectral_peft.operators.WaveletCascadeOp`): level j (0-based, length
L_j = n >> j) owns ``positions[off_j : off_j + L_j]`` (off_j = L_0 + … + L_(j−1)), the output
columns of its a_j[0 : L_j/2] and then of its d_j[0 : L_j/2].
"""

from __future__ import annotations

import ctypes

import torch

from . import library

_ARGS = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p,
         ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
MAX_TAPS = 128  # as dwt.c


def _check(positions: torch.Tensor, n: int, levels: int, width: int) -> None:
    """The kernel indexes with ``positions`` unchecked: refuse any that would reach outside. The
    shape checks are cheap and run on every call; the range check (two reductions) once per tensor
    and width (:func:`.library.int32_indices`)."""
    if levels < 1 or n % (1 << levels):
        raise ValueError(f"{levels} levels need a length divisible by 2**{levels}, got {n}")
    size = sum(n >> j for j in range(levels))
    if positions.dtype != torch.int32 or positions.dim() != 1 or positions.numel() != size or not positions.is_contiguous():
        raise ValueError(f"positions must be a contiguous 1-D int32 tensor of {size} columns, got {positions.dtype} {tuple(positions.shape)}")
    library.int32_indices(positions, width, "positions")


def _call(name: str, src: torch.Tensor, n: int, levels: int, lo, hi, positions, width: int, out_width: int):
    if src.dim() < 1 or lo.numel() > MAX_TAPS or not library.usable(src, lo, hi):
        return None
    rows = library.rows(src)
    _check(positions, n, levels, width)
    out = torch.empty(rows.shape[0], out_width, dtype=torch.float32)
    status = library.function(name, _ARGS)(
        rows.data_ptr(), rows.stride(0), rows.shape[0], n, levels, lo.data_ptr(), hi.data_ptr(), lo.numel(),
        positions.data_ptr(), width, out.data_ptr(), out.stride(0), library.threads())
    # status -1: out of memory; -2: arguments the checks above let through (an odd filter length)
    return out.reshape(*src.shape[:-1], out_width) if status == 0 else None


def analysis(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, positions: torch.Tensor, levels: int, width: int):
    """All ``levels`` analysis levels of the rows of x, (..., n) into (..., width), or None where
    the kernel does not apply (:func:`.library.usable`). ``lo``, ``hi``: the reversed
    decomposition filters (float32, contiguous); ``positions``: int32, contiguous,
    n·(2 − 2^(1−levels)) distinct columns in [0, width); the other columns of the result are zero."""
    return _call("dwt_analysis_f32", x, x.shape[-1], levels, lo, hi, positions, width, width)


def synthesis(z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, positions: torch.Tensor, levels: int, n: int):
    """The adjoint of :func:`analysis`: (..., width) coefficients back to (..., n) signals, or None."""
    return _call("dwt_synthesis_f32", z, n, levels, lo, hi, positions, z.shape[-1], n)


_ROWS_ARGS = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
              ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]


def synthesis_rows(z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor | None:
    """One synthesis level along the rows of a 2-D ``z`` (length × width, [a | d] stacked by rows,
    each row contiguous): the transform of every column, as whole-row multiply-adds. None where the
    kernel does not apply (:func:`.library.usable`, not 2-D, an odd length)."""
    if z.dim() != 2 or z.shape[0] % 2 or z.shape[0] < 2 or lo.numel() > MAX_TAPS or not library.usable(z, lo, hi):
        return None
    z = library.rows(z)
    out = torch.empty(z.shape, dtype=torch.float32)
    status = library.function("dwt_synthesis_rows_f32", _ROWS_ARGS)(
        z.data_ptr(), z.stride(0), z.shape[0], z.shape[1], lo.data_ptr(), hi.data_ptr(), lo.numel(),
        out.data_ptr(), out.stride(0), library.threads())
    return out if status == 0 else None
