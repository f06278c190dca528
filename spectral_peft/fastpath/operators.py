"""Real linear maps along the last dimension: the 1-D building blocks of a sparse factorization.

A :class:`LinearOp` ``A`` (``size_out × size_in``) acts on row vectors stacked along the last
dimension of a tensor, batched over all leading dimensions:

    A.apply(x)    (..., size_in)  -> (..., size_out),  every row r ↦ A r
    A.adjoint(z)  (..., size_out) -> (..., size_in),   every row r ↦ Aᵀ r

The adapter's fast routes transform *activations* (tokens × features) with these maps, so they
are written for a token-major layout (features contiguous) and cost O(size · log size) per row.
Every operator also says what one application costs (:meth:`LinearOp.cost`) so a route can be
chosen by shape.

Operators here:

* :class:`IdentityOp`        A = I.
* :class:`SpectrumOp`        a "twisted" real FFT: view_as_real(rfft(x[perm])·f), one FFT and one
                             pass; its adjoint is one pass and one inverse FFT. Three instances:
  - :func:`RfftOp`           rows 2k, 2k+1 = s·cos(2πkn/N), −s·sin(2πkn/N): the cos/sin inner
                             products (real DFT layouts, and the column side of the standard DHT);
  - :func:`HartleyPairOp`    the orthonormal DHT, bin k holding (H_k, H_(N−k)) (f = 1 + i);
  - :func:`CosinePairOp`     the orthonormal DCT-II by Makhoul's reordering, bin k holding
                             (X_k, −X_(N−k)) (f = the DCT twiddles).
  The ``*_slot`` helpers say where a given coefficient (cos_f, sin_f, H_f, X_f) sits.
* :class:`WaveletCascadeOp`  all levels of a periodized 1-D DWT side by side, each level a banded
                             matmul (:class:`DwtLevel`).
* ``op.T``                   the transpose of any operator.

Pair layouts cost one elementwise pass more than a plain FFT but keep every basis function in
one real slot, so a separable basis needs one core entry per coefficient, not four.
"""

from __future__ import annotations

import functools
import math

import torch


# Rough per-element costs (seconds, one x86 core; measured with torch 2.13's MKL FFT), used only
# to rank routes by shape: an FFT of length n costs FFT_NS·(1 + log2 n / 8) per element, an
# elementwise pass PASS_NS per element, and every launched op OP_OVERHEAD.
FFT_NS = 0.55e-9
PASS_NS = 0.3e-9
OP_OVERHEAD = 8e-6


def fft_cost(rows: int, n: int, passes: float = 1.0) -> float:
    """Estimated seconds for an FFT-based 1-D transform of ``rows`` rows of length ``n``."""
    return rows * n * (FFT_NS * (1.0 + math.log2(max(n, 2)) / 8.0) + PASS_NS * passes) + 3 * OP_OVERHEAD


class LinearOp:
    """A real linear map ``A`` of shape (size_out, size_in) applied to the rows of a tensor."""

    size_in: int
    size_out: int

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def cost(self, rows: int) -> float:
        """Estimated seconds for one :meth:`apply` (or :meth:`adjoint`) on ``rows`` rows."""
        return fft_cost(rows, max(self.size_in, self.size_out))

    # Optional block structure: an operator whose output is naturally computed in pieces (the
    # levels of a wavelet cascade) returns them without concatenating; the sampled product of the
    # core then gathers from each piece. ``out_blocks``/``in_blocks``: widths of apply's output /
    # adjoint's output pieces, or None for one piece.
    out_blocks: list[int] | None = None
    in_blocks: list[int] | None = None

    def apply_blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.apply(x)]

    def adjoint_blocks(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [self.adjoint(z)]

    @property
    def T(self) -> "LinearOp":
        return _Transposed(self)

    def matrix(self, dtype=torch.float64, device=None) -> torch.Tensor:
        """The dense (size_out, size_in) matrix (for tests and debugging)."""
        eye = torch.eye(self.size_in, dtype=dtype, device=device)
        return self.apply(eye).T

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.size_out}x{self.size_in})"


class _Transposed(LinearOp):
    def __init__(self, op: LinearOp):
        self.op = op
        self.size_in, self.size_out = op.size_out, op.size_in

    def apply(self, x):
        return self.op.adjoint(x)

    def adjoint(self, z):
        return self.op.apply(z)

    def cost(self, rows):
        return self.op.cost(rows)

    @property
    def out_blocks(self):
        return self.op.in_blocks

    @property
    def in_blocks(self):
        return self.op.out_blocks

    def apply_blocks(self, x):
        return self.op.adjoint_blocks(x)

    def adjoint_blocks(self, z):
        return self.op.apply_blocks(z)

    @property
    def T(self):
        return self.op

    def __repr__(self):
        return f"{self.op!r}.T"


class IdentityOp(LinearOp):
    def __init__(self, n: int):
        self.size_in = self.size_out = n

    def apply(self, x):
        return x

    def adjoint(self, z):
        return z

    def cost(self, rows):
        return 0.0


@functools.lru_cache(maxsize=128)
def _half_spectrum_weights(n: int) -> torch.Tensor:
    """1 at DC (and Nyquist for even n), 1/2 elsewhere: irfft counts interior bins twice."""
    k = n // 2 + 1
    w = torch.full((k,), 0.5, dtype=torch.float64)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


_DUAL_NORM = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


class SpectrumOp(LinearOp):
    """A x = view_as_real(rfft(x[perm], norm) · f): the real view of a twisted real FFT.

    Output rows 2k and 2k+1 are the real and imaginary parts of bin k (k = 0..⌊N/2⌋), times the
    complex per-bin factor ``f`` (a scalar or a length-(⌊N/2⌋+1) vector; default 1), of the FFT of
    the input permuted by ``perm`` (default none). One FFT plus one elementwise pass, and its
    adjoint is one pass plus one inverse FFT:

        Aᵀ z = irfft(Z · conj(f) · w, dual norm)[perm⁻¹]      (w = 1 at DC/Nyquist, 1/2 elsewhere)

    size_out = 2(⌊N/2⌋+1) (the imaginary rows of DC, and of Nyquist for even N, are redundant).
    """

    def __init__(self, n: int, norm: str = "backward", factor=None, perm: torch.Tensor | None = None):
        if norm not in _DUAL_NORM:
            raise ValueError(f"norm must be one of {sorted(_DUAL_NORM)}, got {norm!r}")
        self.n = n
        self.norm = norm
        self.size_in = n
        self.size_out = 2 * (n // 2 + 1)
        self.factor = None if factor is None else torch.as_tensor(factor, dtype=torch.complex128)
        self.perm = None if perm is None else torch.as_tensor(perm, dtype=torch.long)
        self.unperm = None if perm is None else torch.argsort(self.perm)
        self._cache: dict = {}

    def _consts(self, device, dtype):
        key = (device, dtype)
        if key not in self._cache:
            complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
            weights = _half_spectrum_weights(self.n).to(torch.complex128)
            factor = self.factor
            back = weights if factor is None else weights * factor.conj()
            fwd = None if factor is None else factor.to(device=device, dtype=complex_dtype)
            if fwd is not None and fwd.dim() == 0:
                fwd = complex(fwd)
            perm = None if self.perm is None else self.perm.to(device)
            unperm = None if self.unperm is None else self.unperm.to(device)
            self._cache[key] = (fwd, back.to(device=device, dtype=complex_dtype), perm, unperm)
        return self._cache[key]

    def apply(self, x):
        fwd, _, perm, _ = self._consts(x.device, x.dtype)
        if perm is not None:
            x = x.index_select(-1, perm)  # (drops the caller's reference only locally)
        spectrum = torch.fft.rfft(x, dim=-1, norm=self.norm)
        del x
        if fwd is not None:
            spectrum.mul_(fwd)
        return torch.view_as_real(spectrum).flatten(-2)

    def adjoint(self, z):
        _, back, _, unperm = self._consts(z.device, z.dtype)
        spectrum = torch.view_as_complex(z.unflatten(-1, (-1, 2)).contiguous()) * back
        out = torch.fft.irfft(spectrum, n=self.n, dim=-1, norm=_DUAL_NORM[self.norm])
        del spectrum
        return out if unperm is None else out.index_select(-1, unperm)

    def cost(self, rows):
        return fft_cost(rows, self.n, passes=1.0 + (self.perm is not None))


# Operators are immutable, so equal ones are shared (one instance, with its constants, per size).
@functools.lru_cache(maxsize=256)
def RfftOp(n: int, norm: str = "backward") -> SpectrumOp:
    """Rows 2k, 2k+1 of A: s·cos(2πkn/N) and −s·sin(2πkn/N) (s = 1, 1/√N or 1/N for the norm)."""
    return SpectrumOp(n, norm)


def rfft_cos_slot(freq: torch.Tensor, n: int):
    """(slot, sign) of cos(2π·freq·t/n) among the rows of RfftOp(n): row 2k = cos_k."""
    k = torch.minimum(freq, n - freq)
    return 2 * k, torch.ones(freq.shape, dtype=torch.float64)


def rfft_sin_slot(freq: torch.Tensor, n: int):
    """(slot, sign) of sin(2π·freq·t/n) among the rows of RfftOp(n) (row 2k+1 = −sin_k).

    sin_f = −row(2f+1) for f ≤ n/2; sin_f = −sin_(n−f) = +row(2(n−f)+1) above. Sign 0 where the
    sine vanishes identically (f = 0, or f = n/2 for even n).
    """
    upper = 2 * freq > n
    k = torch.where(upper, n - freq, freq)
    sign = torch.where(upper, 1.0, -1.0).to(torch.float64)
    sign = torch.where((k == 0) | (2 * k == n), 0.0, sign)
    return 2 * k + 1, sign


@functools.lru_cache(maxsize=256)
def HartleyPairOp(n: int) -> SpectrumOp:
    """The orthonormal DHT in pair layout: view_as_real(rfft(x, "ortho")·(1+i)).

    Bin k holds (Re F_k − Im F_k, Re F_k + Im F_k) = (H_k, H_(n−k)); see :func:`hartley_slot`.
    """
    return SpectrumOp(n, "ortho", factor=1 + 1j)


def hartley_slot(freq: torch.Tensor, n: int):
    """(slot, sign) of H_freq (the DHT coefficient) in :func:`HartleyPairOp` (n) output."""
    slot = torch.where(2 * freq <= n, 2 * freq, 2 * (n - freq) + 1)
    return slot, torch.ones(freq.shape, dtype=torch.float64)


@functools.lru_cache(maxsize=256)
def CosinePairOp(n: int) -> SpectrumOp:
    """The orthonormal DCT-II in pair layout (Makhoul): view_as_real(rfft(x[reorder]) · s_k e^{−iπk/(2n)}).

    With Z_k that product, X_k = Re Z_k and X_(n−k) = −Im Z_k; see :func:`cosine_slot`.
    """
    reorder = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)])
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    scale = torch.full_like(k, math.sqrt(2.0 / n))
    scale[0] = math.sqrt(1.0 / n)
    factor = torch.polar(scale, -math.pi * k / (2 * n))
    return SpectrumOp(n, "backward", factor=factor, perm=reorder)


def cosine_slot(freq: torch.Tensor, n: int):
    """(slot, sign) of the DCT-II coefficient X_freq in :func:`CosinePairOp` (n) output."""
    low = freq <= n // 2
    slot = torch.where(low, 2 * freq, 2 * (n - freq) + 1)
    return slot, torch.where(low, 1.0, -1.0).to(torch.float64)


def _block_size(half: int, target: int = 8) -> int:
    """Largest divisor of ``half`` that is <= target (the output pairs per block of a DWT level)."""
    for b in range(min(target, half), 0, -1):
        if half % b == 0:
            return b
    return 1


class DwtLevel:
    """One level of a periodized orthogonal DWT of length L as gathered windows times a small matrix.

    With the PyWavelets periodization convention (see :mod:`spectral_peft.bases.wavelet`), output k
    of the analysis is a[k] = Σ_i lo[i]·x[(s + 2k + i) mod L] (d with hi), s = 1 − F/2, lo/hi the
    reversed decomposition filters. B consecutive outputs of a and of d read a window of
    W = 2B + F − 2 consecutive inputs, so the analysis is: gather (nb × W) windows, multiply by one
    (2B × W) matrix. Its output layout is blockwise, (nb, [a_block | d_block]) (see :meth:`slot`),
    so that shifting x by 2B shifts the output by 2B. The synthesis (the adjoint, the level being
    orthogonal) has the same form: output block b (x[2Bb : 2Bb+2B]) reads a fixed set of
    coefficient positions shifted by 2Bb; that set and its matrix are read off the analysis of the
    2B unit impulses of block 0, so they are exact by construction.
    """

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor, length: int):
        taps = lo.numel()
        self.length = length
        self.block = _block_size(length // 2)
        b = self.block
        self.blocks = length // (2 * b)
        self.window = 2 * b + taps - 2
        start = 1 - taps // 2
        offsets = 2 * b * torch.arange(self.blocks)[:, None] + torch.arange(self.window)[None, :]
        self.index = ((start + offsets) % length).reshape(-1)  # into the input signal
        matrix = torch.zeros(2 * b, self.window, dtype=torch.float64)
        for k in range(b):
            matrix[k, 2 * k : 2 * k + taps] += lo
            matrix[b + k, 2 * k : 2 * k + taps] += hi
        self.matrix = matrix
        # synthesis: impulse responses of x[0..2B) give the coefficient set block 0 reads
        impulses = self.analysis(torch.eye(length, dtype=torch.float64)[: 2 * b], self.index, matrix)
        support = torch.nonzero(impulses.abs().sum(0)).reshape(-1)
        self.synthesis_window = support.numel()
        shifts = 2 * b * torch.arange(self.blocks)[:, None]
        self.synthesis_index = ((support[None, :] + shifts) % length).reshape(-1)
        self.synthesis_matrix = impulses[:, support]  # (2B, window'): x[r] = Σ_i m[r, i] z[support_i]
        self._cache: dict = {}

    def slot(self, detail: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Output position of a[k] (detail False) or d[k] (detail True) in the blockwise layout."""
        b = self.block
        return torch.div(k, b, rounding_mode="floor") * (2 * b) + detail.long() * b + k % b

    def consts(self, device, dtype, in_map: torch.Tensor | None = None):
        key = (device, dtype, None if in_map is None else in_map.data_ptr())
        if key not in self._cache:
            index = self.index if in_map is None else in_map[self.index]
            self._cache[key] = (
                index.to(device),
                self.matrix.to(device=device, dtype=dtype),
                self.synthesis_index.to(device),
                self.synthesis_matrix.to(device=device, dtype=dtype),
            )
        return self._cache[key]

    def analysis(self, src: torch.Tensor, index: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """Blockwise [a | d] of the signal src[..., index] (index: from :meth:`consts`)."""
        windows = src.index_select(-1, index).unflatten(-1, (self.blocks, self.window))
        return torch.matmul(windows, matrix.T).flatten(-2)

    def synthesis(self, z: torch.Tensor, index: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """The signal (natural order) whose blockwise analysis is ``z``."""
        windows = z.index_select(-1, index).unflatten(-1, (self.blocks, self.synthesis_window))
        return torch.matmul(windows, matrix.T).flatten(-2)

    def low_view(self, z: torch.Tensor) -> torch.Tensor:
        """The a coefficients of a blockwise buffer, in order, as a (..., nb, B) view."""
        return z.unflatten(-1, (self.blocks, 2, self.block))[..., 0, :]


class WaveletCascadeOp(LinearOp):
    """All levels of a periodized orthogonal 1-D DWT, side by side.

    With A_j the one-level analysis of a length-N/2^(j−1) signal (outputs a_j and d_j) and a_0 = x,
    ``apply`` returns the level outputs [A_1 a_0 | A_2 a_1 | … | A_L a_(L−1)] (size_out =
    N·(2 − 2^(1−L))): level j holds the inner products of x with the level-j scaling functions and
    wavelets, the 1-D factors of the level-j blocks of the 2-D pyramid. Each level is stored in the
    blockwise layout of :class:`DwtLevel`; :meth:`slot` maps (level, index in [a_j | d_j]) to a
    position. ``adjoint`` is the synthesis cascade (A_j is orthogonal, so A_jᵀ is the synthesis).

    Args:
        wavelet: a PyWavelets orthogonal wavelet name; n: the signal length; levels: L.
    """

    def __init__(self, wavelet: str, n: int, levels: int):
        import pywt

        family = pywt.Wavelet(wavelet)
        lo = torch.tensor(family.dec_lo[::-1], dtype=torch.float64)
        hi = torch.tensor(family.dec_hi[::-1], dtype=torch.float64)
        self.n = n
        self.taps = lo.numel()
        self.levels = [DwtLevel(lo, hi, n >> j) for j in range(levels)]
        lengths = [lvl.length for lvl in self.levels]
        self.offsets = [sum(lengths[:j]) for j in range(levels)]
        # level j+1 reads a_j, which sits at these positions of level j's output
        self.in_maps = [None] + [
            lvl.slot(torch.zeros(lvl.length // 2, dtype=torch.bool), torch.arange(lvl.length // 2))
            for lvl in self.levels[:-1]
        ]
        self.size_in = n
        self.size_out = sum(lengths)

    def slot(self, level: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Position of entry ``index`` of the pyramid layout [a_j | d_j] of level ``level`` (1-based)."""
        out = torch.empty_like(index)
        for j, lvl in enumerate(self.levels):
            mask = level == j + 1
            half = lvl.length // 2
            k = index[mask]
            out[mask] = self.offsets[j] + lvl.slot(k >= half, k % half)
        return out

    @property
    def out_blocks(self):
        return [lvl.length for lvl in self.levels]

    def apply_blocks(self, x):
        outs = []
        src = x
        for lvl, in_map in zip(self.levels, self.in_maps):
            index, matrix, _, _ = lvl.consts(x.device, x.dtype, in_map)
            src = lvl.analysis(src, index, matrix)
            outs.append(src)
        return outs

    def apply(self, x):
        outs = self.apply_blocks(x)
        return torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]

    def adjoint(self, z):
        acc = None
        for j in reversed(range(len(self.levels))):
            lvl = self.levels[j]
            if acc is None:
                acc = z[..., self.offsets[j] : self.offsets[j] + lvl.length]
            _, _, index, matrix = lvl.consts(z.device, z.dtype)
            signal = lvl.synthesis(acc, index, matrix)  # a_(j-1), or x for j = 0
            if j == 0:
                return signal
            parent = self.levels[j - 1]
            acc = z[..., self.offsets[j - 1] : self.offsets[j - 1] + parent.length].clone()
            parent.low_view(acc).add_(signal.unflatten(-1, (parent.blocks, parent.block)))
        return acc

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def shared(wavelet: str, n: int, levels: int) -> "WaveletCascadeOp":
        """One instance per (wavelet, n, levels)."""
        return WaveletCascadeOp(wavelet, n, levels)

    def cost(self, rows):
        per_element = PASS_NS * 3.0 + MATMUL_EQUIV_NS * (2 * 8 + self.taps - 2)
        return 2 * rows * self.n * per_element + 4 * len(self.levels) * OP_OVERHEAD


MATMUL_EQUIV_NS = 0.03e-9  # per multiply-add of a small dense matmul
