"""Small C kernels for hot loops that torch has no kernel for, with torch fallbacks everywhere.

* :mod:`.library`: builds the ``*.c`` sources here into one cached shared library and loads it.
* :mod:`.sampled`: Σ_t a[t, i_e]·b[t, j_e] over a list of entries (the coefficient gradient).
* :mod:`.dwt`: the periodized orthogonal DWT cascade along the rows of an array, and one level
  along the columns of a matrix.
* :mod:`.wht`: the Walsh–Hadamard butterflies along the rows (optionally written transposed).
* :mod:`.reorder`: the DCT's even/odd (Makhoul) reordering along the rows.
* :mod:`.transpose`: the transpose of a matrix (between the two axes of the 2-D ΔW build).

Each wrapper returns None where its kernel does not apply (no compiler, ``SPECTRAL_PEFT_NATIVE=0``,
not float32 on the CPU, inputs that need autograd, or a ``torch.compile`` trace), and the caller
takes its torch route.
"""

from .library import available, enabled, handles, usable

__all__ = ["available", "enabled", "handles", "usable"]
