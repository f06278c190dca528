"""Real 1-D linear operators along the last dimension: the one implementation of every 1-D transform.

Both the dense 2-D transforms of :mod:`spectral_peft.bases` and the adapter's fast routes
(:mod:`spectral_peft.fastpath`, through a basis's :meth:`~spectral_peft.bases.SpectralBasis.factorization`)
are built from these operators, so each transform (its index maps, twiddles, filters and
normalisation) is written once, here.

A :class:`LinearOp` ``A`` of shape ``size_out × size_in`` acts on the rows of a tensor, batched
over all leading dimensions:

    A.apply(x)    (..., size_in)  -> (..., size_out),   every row r ↦ A r
    A.adjoint(z)  (..., size_out) -> (..., size_in),    every row r ↦ Aᵀ r
    A.T           the transposed operator

An operator whose output holds the orthonormal coefficients X_k of a 1-D transform (in some
"slot" order, possibly with a sign and with a few redundant slots) also says where coefficient
``k`` sits: ``A.slot(k) -> (slot, sign)`` with ``A.apply(x)[slot] = sign · X_k``. Then

    A.coefficients(x, dim)   X along ``dim`` in natural order (k = 0..n−1)
    A.synthesize(X, dim)     its inverse (= the adjoint, the transform being orthonormal)

The operators (factories are cached: equal operators are one shared instance):

=======================  =====================================================================
``identity(n)``          A = I; ``slot(k) = (k, +1)``.
``hartley(n)``           orthonormal DHT H_k = n^-1/2 Σ x_t cas(2πkt/n), cas = cos + sin, in pair
                         layout: bin k of one real FFT holds (H_k, H_(n−k)). Self-inverse.
``cosine(n)``            orthonormal DCT-II X_k = s_k Σ x_t cos(πk(2t+1)/(2n)), s_0 = n^-1/2,
                         s_k = (2/n)^1/2 (``scipy.fft.dct(norm="ortho")``), by Makhoul's reordering
                         and one real FFT; bin k holds (X_k, −X_(n−k)).
``walsh_hadamard(n)``    orthonormal Walsh–Hadamard transform (n a power of two, Sylvester order:
                         X_k = n^-1/2 Σ x_t (−1)^popcount(k AND t), = ``scipy.linalg.hadamard(n)/√n``);
                         compiled butterflies on float32 CPU arrays, else one small dense matmul
                         per Kronecker factor H_f (f <= 64); self-inverse.
``rfft(n, norm)``        the real view of ``torch.fft.rfft``: rows 2k, 2k+1 are s·cos(2πkt/n) and
                         −s·sin(2πkt/n) (s = 1, n^-1/2 or 1/n for norm "backward", "ortho",
                         "forward"); ``cos_slot(k)`` / ``sin_slot(k)`` locate cos_k and sin_k.
``dwt_level(w, n)``      one level of the periodized orthogonal DWT of PyWavelets family ``w``
                         (``pywt.dwt(x, w, mode="periodization")``): a windowed gather and one
                         small dense matmul; ``coefficients`` gives the layout [a | d].
``wavelet_cascade(w, n, levels)``  the outputs of every level of a multi-level DWT side by side
                         (the 1-D factors of every block of the 2-D wavelet pyramid).
=======================  =====================================================================

Combinators build operators from operators: ``block_diagonal(op, count)`` (blockdiag(op, …), cached),
``SpreadOp(a, count)`` (I_count ⊗ a), ``ComposedOp(outer, inner)`` (outer · inner) and
``StackedOp([A_1, A_2, …])`` (outputs side by side, as output blocks).

Every operator also estimates what one application costs (:meth:`LinearOp.cost`), which the
fast routes use to choose a route by shape. Constants (index maps, twiddles, filter matrices) are
built once in float64 on the CPU and copied to a device and precision on first use.
"""

from __future__ import annotations

import functools
import math

import torch

from .native import dwt as native_dwt
from .native import reorder as native_reorder
from .native import wht as native_wht

# Rough per-element costs (seconds, one x86 core; measured with torch 2.13's MKL FFT), used only
# to rank routes by shape: an FFT of length n costs FFT_NS·(1 + log2 n / 8) per element, an
# elementwise pass PASS_NS per element, a small dense matmul MATMUL_EQUIV_NS per multiply-add, and
# every launched op OP_OVERHEAD.
FFT_NS = 0.55e-9
PASS_NS = 0.3e-9
MATMUL_EQUIV_NS = 0.03e-9
OP_OVERHEAD = 8e-6
# The compiled DWT cascade (spectral_peft.native.dwt): per row and signal element, a fixed part
# (copies in and out of cache) plus one per filter tap (all levels together).
NATIVE_DWT_NS = 0.7e-9
NATIVE_DWT_TAP_NS = 0.08e-9
# The compiled Walsh–Hadamard transform (spectral_peft.native.wht): per row and element, a fixed
# part plus one per butterfly stage.
NATIVE_WHT_NS = 0.3e-9
NATIVE_WHT_STAGE_NS = 0.03e-9

# Gathered windows of a column synthesis (DwtLevel.synthesize along dim -2) are built a few
# output blocks at a time, about this many floats (2 MiB in float32) each.
WINDOW_CHUNK_ELEMENTS = 1 << 19

_DUAL_NORM = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


def fft_cost(rows: int, n: int, passes: float = 1.0) -> float:
    """Estimated seconds for an FFT-based 1-D transform of ``rows`` rows of length ``n``."""
    return rows * n * (FFT_NS * (1.0 + math.log2(max(n, 2)) / 8.0) + PASS_NS * passes) + 3 * OP_OVERHEAD


def _along(fn, x: torch.Tensor, dim: int) -> torch.Tensor:
    """``fn`` (which acts on the last dimension) applied along ``dim``."""
    if dim in (-1, x.dim() - 1):
        return fn(x)
    return fn(x.transpose(dim, -1)).transpose(dim, -1)


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


class LinearOp:
    """A real linear map ``A`` of shape (size_out, size_in) applied to the rows of a tensor."""

    size_in: int
    size_out: int

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def cost(self, rows: int, native: bool = False) -> float:
        """Estimated seconds for one :meth:`apply` (or :meth:`adjoint`) on ``rows`` rows; ``native``:
        whether the arrays are of the kind the compiled kernels take (float32 on the CPU, library
        available), for the operators that have one."""
        return fft_cost(rows, max(self.size_in, self.size_out))

    def prepare(self, device, dtype) -> None:
        """Build the constants for ``device``/``dtype`` now (before a traced or timed region)."""

    # Optional block structure: an operator whose output is naturally computed in pieces (the
    # levels of a wavelet cascade) may return them from apply_blocks / adjoint_blocks without
    # concatenating, consecutive along the last dimension; the sampled product of the core then
    # reads each piece (their widths are the pieces' own). A call may return one whole piece.

    def apply_blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.apply(x)]

    def adjoint_blocks(self, z: torch.Tensor) -> list[torch.Tensor]:
        return [self.adjoint(z)]

    # Optional: the result of apply / adjoint on a 2-D x (rows × size) written transposed, as a
    # contiguous (size × rows) array, what a 2-D transform needs between its two axes; None where
    # the operator cannot write it directly (the caller then transposes). The compiled
    # Walsh–Hadamard transform can, and saves the copy.
    def apply_transposed(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def adjoint_transposed(self, z: torch.Tensor) -> torch.Tensor | None:
        return None

    @functools.cached_property
    def T(self) -> "LinearOp":
        return _Transposed(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.size_out}x{self.size_in})"


class CoefficientOp(LinearOp):
    """An operator whose output holds the coefficients X_k of an orthonormal 1-D transform.

    Subclasses define :meth:`slot`; :meth:`coefficients` and :meth:`synthesize` then give the
    transform in natural order and its inverse.
    """

    n: int

    def slot(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(slot, sign) per coefficient index ``k``: ``apply(x)[..., slot] = sign · X_k``."""
        raise NotImplementedError

    @functools.cached_property
    def _natural(self):
        slots, signs = self.slot(torch.arange(self.n))
        return slots, (None if bool((signs == 1).all()) else signs)

    def coefficients(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """X_k (k = 0..n−1) along ``dim``: the transform in natural order."""
        slots, signs = self._natural

        def fn(t):
            out = self.apply(t).index_select(-1, slots.to(t.device))
            return out if signs is None else out * signs.to(device=t.device, dtype=out.dtype)

        return _along(fn, x, dim)

    def synthesize(self, coefficients: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """x from its coefficients X along ``dim`` (the inverse of :meth:`coefficients`)."""
        slots, signs = self._natural

        def fn(c):
            if signs is not None:
                c = c * signs.to(device=c.device, dtype=c.dtype)
            z = c.new_zeros(*c.shape[:-1], self.size_out).index_copy(-1, slots.to(c.device), c)
            return self.adjoint(z)

        return _along(fn, coefficients, dim)


class _Transposed(LinearOp):
    def __init__(self, op: LinearOp):
        self.op = op
        self.size_in, self.size_out = op.size_out, op.size_in

    def apply(self, x):
        return self.op.adjoint(x)

    def adjoint(self, z):
        return self.op.apply(z)

    def cost(self, rows, native=False):
        return self.op.cost(rows, native)

    def prepare(self, device, dtype):
        self.op.prepare(device, dtype)

    def apply_blocks(self, x):
        return self.op.adjoint_blocks(x)

    def adjoint_blocks(self, z):
        return self.op.apply_blocks(z)

    def apply_transposed(self, x):
        return self.op.adjoint_transposed(x)

    def adjoint_transposed(self, z):
        return self.op.apply_transposed(z)

    @property
    def T(self):
        return self.op

    def __repr__(self):
        return f"{self.op!r}.T"


class IdentityOp(CoefficientOp):
    """A = I (n × n)."""

    def __init__(self, n: int):
        self.n = self.size_in = self.size_out = n

    def apply(self, x):
        return x

    def adjoint(self, z):
        return z

    def slot(self, k):
        k = torch.as_tensor(k, dtype=torch.long)
        return k, torch.ones(k.shape, dtype=torch.float64)

    def cost(self, rows, native=False):
        return 0.0


class _Constants:
    """Per-(device, dtype) copies of constants built once on the CPU (see :meth:`build`)."""

    _const_cache: dict | None = None

    def _consts(self, device, dtype):
        cache = self._const_cache
        if cache is None:
            cache = self._const_cache = {}
        key = (device, dtype)
        if key not in cache:
            with torch.inference_mode(False):  # kept for later training steps too
                cache[key] = self.build(device, dtype)
        return cache[key]

    def build(self, device, dtype) -> tuple:
        raise NotImplementedError

    def prepare(self, device, dtype):
        self._consts(torch.device(device), dtype)


@functools.lru_cache(maxsize=128)
def _half_spectrum_weights(n: int) -> torch.Tensor:
    """1 at DC (and Nyquist for even n), 1/2 elsewhere: irfft counts interior bins twice."""
    k = n // 2 + 1
    w = torch.full((k,), 0.5, dtype=torch.float64)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


class SpectrumOp(_Constants, CoefficientOp):
    """A x = view_as_real(rfft(x[perm], norm) · f): the real view of a twisted real FFT.

    Output rows 2k and 2k+1 are the real and imaginary parts of bin k (k = 0..⌊n/2⌋), times the
    complex per-bin factor ``f`` (a length-(⌊n/2⌋+1) vector; default 1), of the FFT of the input
    permuted by ``perm`` (default none). One FFT plus one elementwise pass; the adjoint is one
    pass plus one inverse FFT:

        Aᵀ z = irfft(Z · conj(f) · w, dual norm)[perm⁻¹]      (w = 1 at DC/Nyquist, 1/2 elsewhere)

    size_out = 2(⌊n/2⌋+1) (the imaginary rows of DC, and of Nyquist for even n, are redundant).
    Half-precision inputs are transformed in float32 (``torch.fft`` on a CPU has no bf16).
    """

    def __init__(self, n: int, norm: str = "backward", factor=None, perm: torch.Tensor | None = None):
        if norm not in _DUAL_NORM:
            raise ValueError(f"norm must be one of {sorted(_DUAL_NORM)}, got {norm!r}")
        self.n = self.size_in = n
        self.norm = norm
        self.size_out = 2 * (n // 2 + 1)
        self.factor = None if factor is None else torch.as_tensor(factor, dtype=torch.complex128)
        self.perm = None if perm is None else torch.as_tensor(perm, dtype=torch.long)
        self.unperm = None if perm is None else torch.argsort(self.perm)

    @property
    def _fft_norm(self) -> str:
        """The norm torch.fft applies: with a per-bin factor, the norm's scale is folded into the
        factor (one complex multiply either way) and the FFT runs unscaled (saves MKL a pass)."""
        return "backward" if self.factor is not None else self.norm

    def build(self, device, dtype):
        complex_dtype = _complex_of(dtype)
        back = _half_spectrum_weights(self.n).to(torch.complex128)
        factor = self.factor
        if factor is not None:
            factor = factor * {"backward": 1.0, "ortho": self.n**-0.5, "forward": 1.0 / self.n}[self.norm]
            back = back * factor.conj()
        fwd = None if factor is None else factor.to(device=device, dtype=complex_dtype)
        perm = None if self.perm is None else self.perm.to(device)
        unperm = None if self.unperm is None else self.unperm.to(device)
        return fwd, back.to(device=device, dtype=complex_dtype), perm, unperm

    def apply(self, x):
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        fwd, _, perm, _ = self._consts(x.device, x.dtype)
        if perm is not None:
            x = self._permute(x, perm)
        spectrum = torch.fft.rfft(x, dim=-1, norm=self._fft_norm)
        if fwd is not None:
            spectrum = spectrum * fwd if spectrum.requires_grad else spectrum.mul_(fwd)
        return torch.view_as_real(spectrum).flatten(-2)

    def adjoint(self, z):
        if z.dtype not in (torch.float32, torch.float64):
            z = z.float()
        _, back, _, unperm = self._consts(z.device, z.dtype)
        spectrum = torch.view_as_complex(z.unflatten(-1, (-1, 2)).contiguous()) * back
        out = torch.fft.irfft(spectrum, n=self.n, dim=-1, norm=_DUAL_NORM[self._fft_norm])
        del spectrum  # before the permutation's copy: this runs at the backward's peak
        return out if unperm is None else self._unpermute(out, unperm)

    def _permute(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """x[..., perm] (``perm`` on x's device)."""
        return x.index_select(-1, perm)

    def _unpermute(self, x: torch.Tensor, unperm: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`_permute`: x[..., unperm]."""
        return x.index_select(-1, unperm)

    def cost(self, rows, native=False):
        return fft_cost(rows, self.n, passes=1.0 + (self.perm is not None))


class RfftOp(SpectrumOp):
    """Rows 2k, 2k+1: s·cos(2πkt/n) and −s·sin(2πkt/n) (s = 1, 1/√n or 1/n for the norm)."""

    def cos_slot(self, freq: torch.Tensor):
        """(slot, sign) of cos(2π·freq·t/n): row 2k with k = min(freq, n − freq)."""
        k = torch.minimum(freq, self.n - freq)
        return 2 * k, torch.ones(freq.shape, dtype=torch.float64)

    def sin_slot(self, freq: torch.Tensor):
        """(slot, sign) of sin(2π·freq·t/n); sign 0 where the sine vanishes (freq 0 or n/2).

        sin_f = −row(2f+1) for f ≤ n/2; sin_f = −sin_(n−f) = +row(2(n−f)+1) above.
        """
        n = self.n
        upper = 2 * freq > n
        k = torch.where(upper, n - freq, freq)
        sign = torch.where(upper, 1.0, -1.0).to(torch.float64)
        sign = torch.where((k == 0) | (2 * k == n), 0.0, sign)
        return 2 * k + 1, sign

    def slot(self, k):
        raise TypeError("rfft has cos and sin rows: use cos_slot / sin_slot")


class HartleyOp(SpectrumOp):
    """Orthonormal DHT in pair layout: view_as_real(rfft(x, "ortho")·(1+i)).

    Bin k holds (Re F_k − Im F_k, Re F_k + Im F_k) = (H_k, H_(n−k)).
    """

    def __init__(self, n: int):
        super().__init__(n, "ortho", factor=torch.full((n // 2 + 1,), 1 + 1j, dtype=torch.complex128))

    def slot(self, k):
        k = torch.as_tensor(k, dtype=torch.long)
        slots = torch.where(2 * k <= self.n, 2 * k, 2 * (self.n - k) + 1)
        return slots, torch.ones(k.shape, dtype=torch.float64)


class CosineOp(SpectrumOp):
    """Orthonormal DCT-II in pair layout (Makhoul): view_as_real(rfft(x[reorder]) · s_k e^{−iπk/(2n)}).

    With v = [x_0, x_2, …, x_3, x_1] and Z_k = s_k e^{−iπk/(2n)} rfft(v)_k: X_k = Re Z_k and
    X_(n−k) = −Im Z_k.
    """

    def __init__(self, n: int):
        reorder = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)])
        k = torch.arange(n // 2 + 1, dtype=torch.float64)
        scale = torch.full_like(k, math.sqrt(2.0 / n))
        scale[0] = math.sqrt(1.0 / n)
        super().__init__(n, "backward", factor=torch.polar(scale, -math.pi * k / (2 * n)), perm=reorder)

    # the reordering in registers on float32 CPU arrays (spectral_peft.native.reorder), else a gather
    def _permute(self, x, perm):
        fast = native_reorder.even_odd(x)
        return fast if fast is not None else super()._permute(x, perm)

    def _unpermute(self, x, unperm):
        fast = native_reorder.even_odd_inverse(x)
        return fast if fast is not None else super()._unpermute(x, unperm)

    def slot(self, k):
        k = torch.as_tensor(k, dtype=torch.long)
        low = k <= self.n // 2
        return torch.where(low, 2 * k, 2 * (self.n - k) + 1), torch.where(low, 1.0, -1.0).to(torch.float64)


class WalshHadamardOp(_Constants, CoefficientOp):
    """Orthonormal Walsh–Hadamard transform of a power-of-two length n (Sylvester order), self-adjoint.

    On float32 CPU arrays the compiled butterflies of :mod:`spectral_peft.native.wht` run it
    (log2(n) adds per entry, 8 tokens at a time in cache). Elsewhere: Sylvester's construction
    makes H_n a Kronecker product, H_(ab) = H_a ⊗ H_b, so with n split into equal factors
    f_1·f_2·… of at most ``FACTOR`` (= 64) the transform of a row reshaped to (f_1, f_2, …) is one
    small dense matmul per axis: Σ f_i multiply-adds per entry (128 for n = 4096) at matmul speed
    instead of log2(n) memory-bound butterfly passes of torch ops.
    """

    FACTOR = 64

    def __init__(self, n: int):
        if n < 1 or n & (n - 1):
            raise ValueError(f"the Walsh–Hadamard transform needs a power-of-two length, got {n}")
        self.n = self.size_in = self.size_out = n
        bits, cap = n.bit_length() - 1, self.FACTOR.bit_length() - 1
        count = -(-bits // cap)  # as few factors as possible, as equal as possible (16·16, not 64·4)
        self.factors = [1 << (bits // count + (i < bits % count)) for i in range(count)]

    def build(self, device, dtype):
        import scipy.linalg

        scale = self.n ** (-0.5 / len(self.factors)) if self.factors else 1.0
        return tuple(torch.as_tensor(scipy.linalg.hadamard(f) * scale, dtype=dtype, device=device) for f in self.factors)

    def apply(self, x):
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        if not self.factors:
            return x
        fast = native_wht.hadamard(x, self.n**-0.5)
        if fast is not None:
            return fast
        lead = x.shape[:-1]
        *outer, last = self._consts(x.device, x.dtype)
        x = torch.matmul(x.reshape(*lead, self.n // self.factors[-1], self.factors[-1]), last)  # H_f = H_fᵀ
        for i, matrix in enumerate(outer):  # the other axes: a batched left matmul each
            before, after = math.prod(self.factors[:i]), math.prod(self.factors[i + 1 :])
            x = torch.matmul(matrix, x.reshape(*lead, before, self.factors[i], after))
        return x.reshape(*lead, self.n)

    adjoint = apply

    def apply_transposed(self, x):
        return native_wht.hadamard(x, self.n**-0.5, transposed=True)

    adjoint_transposed = apply_transposed

    def slot(self, k):
        k = torch.as_tensor(k, dtype=torch.long)
        return k, torch.ones(k.shape, dtype=torch.float64)

    def cost(self, rows, native=False):
        if native:
            return rows * self.n * (NATIVE_WHT_NS + NATIVE_WHT_STAGE_NS * math.log2(self.n)) + OP_OVERHEAD
        return rows * self.n * (MATMUL_EQUIV_NS * sum(self.factors) + PASS_NS * 2 * len(self.factors)) + len(self.factors) * OP_OVERHEAD


@functools.lru_cache(maxsize=256)
def walsh_hadamard(n: int) -> WalshHadamardOp:
    """The orthonormal Walsh–Hadamard transform of a power-of-two length n (see :class:`WalshHadamardOp`)."""
    return WalshHadamardOp(n)


@functools.lru_cache(maxsize=256)
def identity(n: int) -> IdentityOp:
    """A = I of size n."""
    return IdentityOp(n)


@functools.lru_cache(maxsize=256)
def hartley(n: int) -> HartleyOp:
    """The orthonormal 1-D DHT of length n (see :class:`HartleyOp`)."""
    return HartleyOp(n)


@functools.lru_cache(maxsize=256)
def cosine(n: int) -> CosineOp:
    """The orthonormal 1-D DCT-II of length n (see :class:`CosineOp`)."""
    return CosineOp(n)


@functools.lru_cache(maxsize=256)
def rfft(n: int, norm: str = "backward") -> RfftOp:
    """The real view of ``torch.fft.rfft`` of length n (see :class:`RfftOp`)."""
    return RfftOp(n, norm)


# ------------------------------------------------------------------------------------------------
# Periodized orthogonal wavelets
# ------------------------------------------------------------------------------------------------
def _block_size(half: int, target: int = 8) -> int:
    """Largest divisor of ``half`` that is <= target (the output pairs per block of a DWT level)."""
    for b in range(min(target, half), 0, -1):
        if half % b == 0:
            return b
    return 1


@functools.lru_cache(maxsize=64)
def wavelet_filters(wavelet: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The reversed decomposition filters (lo, hi) of a PyWavelets orthogonal family, float64."""
    import pywt

    family = pywt.Wavelet(wavelet)
    return (
        torch.tensor(family.dec_lo[::-1], dtype=torch.float64),
        torch.tensor(family.dec_hi[::-1], dtype=torch.float64),
    )


class DwtLevel(_Constants, CoefficientOp):
    """One level of a periodized orthogonal DWT of length L: gathered windows times a small matrix.

    In PyWavelets' periodization convention output k of the analysis is
    a[k] = Σ_i lo[i]·x[(s + 2k + i) mod L] (d with hi), s = 1 − F/2, lo/hi the reversed
    decomposition filters of length F. B consecutive outputs of a and of d read a window of
    W = 2B + F − 2 consecutive inputs, so ``apply`` gathers (nb × W) windows and multiplies them by
    one (2B × W) matrix. Its output layout is blockwise, (nb, [a_block | d_block]) (see
    :meth:`slot`), so that shifting x by 2B shifts the output by 2B. ``adjoint`` (the synthesis, the
    level being orthogonal) has the same form: output block b (x[2Bb : 2Bb+2B]) reads a fixed set
    of coefficient positions shifted by 2Bb; that set and its matrix are read off the analysis of
    the 2B unit impulses of block 0, so they are exact by construction.

    ``coefficients``/``synthesize`` use the standard layout [a | d] (``pywt.dwt``'s cA, cD). On
    float32 CPU arrays they run along the last dimension in the compiled filter bank of
    :mod:`spectral_peft.native.dwt` when it is available, and ``synthesize`` of a matrix along
    dim −2 (the column passes of the 2-D pyramid that builds ΔW) in its row kernel, where every
    filter tap is a multiply-add of whole rows (1,024²: 0.32 ms against 0.88 ms for the gathered
    windows and a batched matmul, the route elsewhere).
    """

    def __init__(self, wavelet: str, length: int):
        if length % 2:
            raise ValueError(f"a periodized DWT level needs an even length, got {length}")
        lo, hi = wavelet_filters(wavelet)
        taps = lo.numel()
        self.wavelet = wavelet
        self.n = self.length = self.size_in = self.size_out = length
        self.taps = taps
        self.block = b = _block_size(length // 2)
        self.blocks = length // (2 * b)
        self.window = 2 * b + taps - 2
        offsets = 2 * b * torch.arange(self.blocks)[:, None] + torch.arange(self.window)[None, :]
        self.index = ((1 - taps // 2 + offsets) % length).reshape(-1)  # into the input signal
        matrix = torch.zeros(2 * b, self.window, dtype=torch.float64)
        for k in range(b):
            matrix[k, 2 * k : 2 * k + taps] += lo
            matrix[b + k, 2 * k : 2 * k + taps] += hi
        self.matrix = matrix
        impulses = self._analysis(torch.eye(length, dtype=torch.float64)[: 2 * b], self.index, matrix)
        support = torch.nonzero(impulses.abs().sum(0)).reshape(-1)
        self.synthesis_window = support.numel()
        shifts = 2 * b * torch.arange(self.blocks)[:, None]
        self.synthesis_index = ((support[None, :] + shifts) % length).reshape(-1)
        self.synthesis_matrix = impulses[:, support]  # (2B, W'): x[r] = Σ_i m[r, i] z[support_i]

        # synthesis from the standard layout [a | d]: the same windows, read through blockwise -> standard
        blockwise_to_standard = torch.empty(length, dtype=torch.long)
        blockwise_to_standard[self.slot(torch.arange(length))[0]] = torch.arange(length)
        self.standard_synthesis_index = blockwise_to_standard[self.synthesis_index]
        # for the compiled filter bank: the filters in float32 and the layout [a | d]
        self.kernel_filters = (lo.float(), hi.float())
        self.standard_positions = torch.arange(length, dtype=torch.int32)

    def build(self, device, dtype):
        return (
            self.index.to(device),
            self.matrix.to(device=device, dtype=dtype),
            self.synthesis_index.to(device),
            self.synthesis_matrix.to(device=device, dtype=dtype),
            self.standard_synthesis_index.to(device),
        )

    def slot(self, k):
        """Position of entry k of the standard layout [a | d] in the blockwise layout (sign +1)."""
        k = torch.as_tensor(k, dtype=torch.long)
        half, b = self.length // 2, self.block
        detail, k = k >= half, k % half
        return torch.div(k, b, rounding_mode="floor") * (2 * b) + detail.long() * b + k % b, torch.ones(
            k.shape, dtype=torch.float64
        )

    def _analysis(self, src, index, matrix):
        windows = src.index_select(-1, index).unflatten(-1, (self.blocks, self.window))
        return torch.matmul(windows, matrix.T).flatten(-2)

    def _synthesis(self, z, index, matrix):
        windows = z.index_select(-1, index).unflatten(-1, (self.blocks, self.synthesis_window))
        return torch.matmul(windows, matrix.T).flatten(-2)

    def apply(self, x, in_index: torch.Tensor | None = None):
        """Blockwise analysis of x (or of x[..., in_index], a gather folded into the windows)."""
        index, matrix, _, _, _ = self._consts(x.device, x.dtype)
        return self._analysis(x, index if in_index is None else in_index, matrix)

    def adjoint(self, z):
        _, _, index, matrix, _ = self._consts(z.device, z.dtype)
        return self._synthesis(z, index, matrix)

    def low_view(self, z: torch.Tensor) -> torch.Tensor:
        """The a coefficients of a blockwise buffer, in order, as a (..., nb, B) view."""
        return z.unflatten(-1, (self.blocks, 2, self.block))[..., 0, :]

    # Standard layout [a | d]. Along dim -2 the windows are whole rows (a row gather and one batched
    # left matmul, no transpose); the synthesis folds the layout into its gather.
    def coefficients(self, x, dim=-1):
        if dim in (-1, x.dim() - 1):
            fast = native_dwt.analysis(x, *self.kernel_filters, self.standard_positions, 1, self.length)
            if fast is not None:
                return fast
        if dim in (-1, x.dim() - 1):
            out = self.apply(x).unflatten(-1, (self.blocks, 2, self.block)).transpose(-3, -2)
            return out.flatten(-3)
        if dim not in (-2, x.dim() - 2):
            return _along(self.coefficients, x, dim)
        index, matrix, _, _, _ = self._consts(x.device, x.dtype)
        windows = x.index_select(-2, index).unflatten(-2, (self.blocks, self.window))  # (..., nb, W, N)
        out = torch.matmul(matrix, windows).unflatten(-2, (2, self.block))  # (..., nb, 2, B, N)
        return out.transpose(-4, -3).flatten(-4, -2)

    def synthesize(self, coefficients, dim=-1):
        c = coefficients
        if dim in (-1, c.dim() - 1):
            fast = native_dwt.synthesis(c, *self.kernel_filters, self.standard_positions, 1, self.length)
            if fast is not None:
                return fast
        _, _, _, matrix, index = self._consts(c.device, c.dtype)
        if dim in (-1, c.dim() - 1):
            windows = c.index_select(-1, index).unflatten(-1, (self.blocks, self.synthesis_window))
            return torch.matmul(windows, matrix.T).flatten(-2)
        if dim not in (-2, c.dim() - 2):
            return _along(self.synthesize, c, dim)
        if torch.compiler.is_compiling() or (torch.is_grad_enabled() and c.requires_grad):
            return self._synthesize_columns(c, index, matrix)
        fast = native_dwt.synthesis_rows(c, *self.kernel_filters)  # every tap a whole-row multiply-add
        if fast is not None:
            return fast
        # Without a graph to record, a few output blocks at a time into one output: the gathered
        # windows (W'/2 times the input) then never exist at full size (this builds ΔW, at peak memory).
        out = c.new_empty(c.shape)
        blocks = out.unflatten(-2, (self.blocks, matrix.shape[0]))  # (..., nb, R, N), contiguous per block
        window = self.synthesis_window
        step = max(1, WINDOW_CHUNK_ELEMENTS // (window * c.shape[-1]))
        for start in range(0, self.blocks, step):
            stop = min(start + step, self.blocks)
            windows = c.index_select(-2, index[start * window : stop * window]).unflatten(-2, (stop - start, window))
            torch.matmul(matrix, windows, out=blocks[..., start:stop, :, :])
        return out

    def _synthesize_columns(self, c, index, matrix):
        windows = c.index_select(-2, index).unflatten(-2, (self.blocks, self.synthesis_window))  # (..., nb, W', N)
        return torch.matmul(matrix, windows).flatten(-3, -2)

    def cost(self, rows, native=False):
        return rows * self.length * (PASS_NS * 3.0 + MATMUL_EQUIV_NS * self.window) + 2 * OP_OVERHEAD


@functools.lru_cache(maxsize=256)
def dwt_level(wavelet: str, length: int) -> DwtLevel:
    """One periodized DWT level of an even ``length`` with PyWavelets family ``wavelet``."""
    return DwtLevel(wavelet, length)


class WaveletCascadeOp(_Constants, LinearOp):
    """All levels of a periodized orthogonal 1-D DWT, side by side.

    With A_j the one-level analysis of a length-n/2^(j−1) signal (outputs a_j and d_j) and a_0 = x,
    ``apply`` returns the level outputs [A_1 a_0 | A_2 a_1 | … | A_L a_(L−1)] (size_out =
    n·(2 − 2^(1−L))): level j holds the inner products of x with the level-j scaling functions and
    wavelets, the 1-D factors of the level-j blocks of the 2-D pyramid. Each level is stored in the
    blockwise layout of :class:`DwtLevel`; :meth:`slot` maps (level, index in [a_j | d_j]) to a
    position. ``adjoint`` is the synthesis cascade (A_j is orthogonal, so A_jᵀ is the synthesis).
    On float32 CPU arrays both run every level in one call of the compiled cascade
    (:mod:`spectral_peft.native.dwt`) when it is available; otherwise level by level with torch ops.
    """

    def __init__(self, wavelet: str, n: int, levels: int):
        self.wavelet, self.n = wavelet, n
        self.levels = [dwt_level(wavelet, n >> j) for j in range(levels)]
        lengths = [lvl.length for lvl in self.levels]
        self.offsets = [sum(lengths[:j]) for j in range(levels)]
        # level j+1 reads a_j: the windows of level j+1 are gathered from level j's blockwise output
        self.in_indices = [None] + [
            parent.slot(torch.arange(parent.length // 2))[0][child.index]
            for parent, child in zip(self.levels[:-1], self.levels[1:])
        ]
        self.size_in = n
        self.size_out = sum(lengths)
        self.kernel_positions = torch.cat(
            [offset + lvl.slot(torch.arange(lvl.length))[0] for offset, lvl in zip(self.offsets, self.levels)]
        ).to(torch.int32)

    def build(self, device, dtype):
        for lvl in self.levels:
            lvl.prepare(device, dtype)
        return tuple(None if i is None else i.to(device) for i in self.in_indices)

    def slot_in_level(self, level: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Position of entry ``index`` of the layout [a_j | d_j] of level ``level`` (1-based)."""
        out = torch.empty_like(index)
        for j, lvl in enumerate(self.levels):
            mask = level == j + 1
            out[mask] = self.offsets[j] + lvl.slot(index[mask])[0]
        return out

    def _kernel(self, direction, src):
        lo, hi = self.levels[0].kernel_filters
        if direction == "analysis":
            return native_dwt.analysis(src, lo, hi, self.kernel_positions, len(self.levels), self.size_out)
        return native_dwt.synthesis(src, lo, hi, self.kernel_positions, len(self.levels), self.n)

    def apply_blocks(self, x):
        fast = self._kernel("analysis", x)
        if fast is not None:
            return [fast]
        in_indices = self._consts(x.device, x.dtype)
        outs = []
        src = x
        for lvl, in_index in zip(self.levels, in_indices):
            src = lvl.apply(src, in_index)
            outs.append(src)
        return outs

    def apply(self, x):
        outs = self.apply_blocks(x)  # [the kernel's whole output], or one piece per level
        return torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]

    def adjoint(self, z):
        fast = self._kernel("synthesis", z)
        if fast is not None:
            return fast
        acc = None
        for j in reversed(range(len(self.levels))):
            lvl = self.levels[j]
            if acc is None:
                acc = z[..., self.offsets[j] : self.offsets[j] + lvl.length]
            signal = lvl.adjoint(acc)  # a_(j-1), or x for j = 0
            if j == 0:
                return signal
            parent = self.levels[j - 1]
            acc = z[..., self.offsets[j - 1] : self.offsets[j - 1] + parent.length].clone()
            parent.low_view(acc).add_(signal.unflatten(-1, (parent.blocks, parent.block)))
        return acc

    def cost(self, rows, native=False):
        if native:
            return rows * self.n * (NATIVE_DWT_NS + NATIVE_DWT_TAP_NS * self.levels[0].taps) + OP_OVERHEAD
        return sum(2 * lvl.cost(rows) for lvl in self.levels)


@functools.lru_cache(maxsize=256)
def wavelet_cascade(wavelet: str, n: int, levels: int) -> WaveletCascadeOp:
    """All ``levels`` levels of the periodized DWT of length ``n`` side by side (see the class)."""
    return WaveletCascadeOp(wavelet, n, levels)


# ------------------------------------------------------------------------------------------------
# Combinators: operators built from other operators
# ------------------------------------------------------------------------------------------------
class BlockDiagonalOp(_Constants, LinearOp):
    """``count`` copies of ``op`` on consecutive pieces of the last dimension: blockdiag(op, …, op).

    Small blocks (``op`` at most ``DENSE_MAX`` wide, e.g. the 4 × 4 patches of a patchwise basis) are
    applied through their dense matrix A, read off ``op`` on the unit vectors: ``group`` consecutive
    blocks at once, i.e. one batched matmul with kron(I_group, A) (at most ``DENSE_MAX`` wide) over
    all rows. ``op``'s own FFT or filter bank would launch its kernels on a few numbers per block,
    and a matmul with an inner dimension of 4 runs far below speed. Larger blocks call ``op``.
    """

    DENSE_MAX = 32

    def __init__(self, op: LinearOp, count: int):
        self.op, self.count = op, count
        self.size_in, self.size_out = count * op.size_in, count * op.size_out
        widest = max(op.size_in, op.size_out)
        self.dense = widest <= self.DENSE_MAX
        self.group = max((g for g in range(1, count + 1) if count % g == 0 and g * widest <= self.DENSE_MAX), default=1)

    def build(self, device, dtype):
        # rows of op.apply(I) are A e_r, so x @ op.apply(I) = A x row by row, and z @ op.apply(I)ᵀ = Aᵀ z
        block = self.op.apply(torch.eye(self.op.size_in, dtype=torch.float64))
        matrix = torch.block_diag(*[block] * self.group)
        return (matrix.to(device=device, dtype=dtype),)

    def _dense(self, x, width, transpose):
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        (matrix,) = self._consts(x.device, x.dtype)
        groups = x.unflatten(-1, (self.count // self.group, self.group * width))
        return torch.matmul(groups, matrix.T if transpose else matrix).flatten(-2)

    def apply(self, x):
        if self.dense:
            return self._dense(x, self.op.size_in, transpose=False)
        return self.op.apply(x.unflatten(-1, (self.count, self.op.size_in))).flatten(-2)

    def adjoint(self, z):
        if self.dense:
            return self._dense(z, self.op.size_out, transpose=True)
        return self.op.adjoint(z.unflatten(-1, (self.count, self.op.size_out))).flatten(-2)

    def cost(self, rows, native=False):
        if self.dense:
            macs = rows * self.size_in * self.group * self.op.size_out
            return macs * MATMUL_EQUIV_NS + 2 * rows * self.size_out * PASS_NS + OP_OVERHEAD
        return self.op.cost(rows * self.count, native)

    def prepare(self, device, dtype):
        self.op.prepare(device, dtype)
        if self.dense:
            super().prepare(device, dtype)


@functools.lru_cache(maxsize=256)
def block_diagonal(op: LinearOp, count: int) -> BlockDiagonalOp:
    """blockdiag(op, …, op) with ``count`` blocks (see the class), one shared instance per (op, count),
    so that adapters of one shape share its constants and the transforms of their common input."""
    return BlockDiagonalOp(op, count)


class SpreadOp(_Constants, LinearOp):
    """I_count ⊗ a: entry i of the input becomes the piece ``value_i · a`` of the output.

    ``(A x)[i·len(a) + r] = x[i]·a[r]``; the adjoint sums each piece against a. It carries a grid
    of values to the blocks it summarises (the block means of a patchwise hierarchy).
    """

    def __init__(self, vector: torch.Tensor, count: int):
        self.vector = torch.as_tensor(vector, dtype=torch.float64).reshape(-1)
        self.count = count
        self.size_in, self.size_out = count, count * self.vector.numel()

    def build(self, device, dtype):
        return (self.vector.to(device=device, dtype=dtype),)

    def apply(self, x):
        (a,) = self._consts(x.device, x.dtype)
        return (x.unsqueeze(-1) * a).flatten(-2)

    def adjoint(self, z):
        (a,) = self._consts(z.device, z.dtype)
        return z.unflatten(-1, (self.count, a.numel())) @ a

    def cost(self, rows, native=False):
        return 2 * rows * self.size_out * PASS_NS + OP_OVERHEAD


class ComposedOp(LinearOp):
    """``outer · inner``: apply ``inner``, then ``outer``."""

    def __init__(self, outer: LinearOp, inner: LinearOp):
        if outer.size_in != inner.size_out:
            raise ValueError(f"cannot compose {outer!r} after {inner!r}: {outer.size_in} != {inner.size_out}")
        self.outer, self.inner = outer, inner
        self.size_in, self.size_out = inner.size_in, outer.size_out

    def apply(self, x):
        return self.outer.apply(self.inner.apply(x))

    def adjoint(self, z):
        return self.inner.adjoint(self.outer.adjoint(z))

    def cost(self, rows, native=False):
        return self.outer.cost(rows, native) + self.inner.cost(rows, native)

    def prepare(self, device, dtype):
        self.outer.prepare(device, dtype)
        self.inner.prepare(device, dtype)


class StackedOp(LinearOp):
    """Several operators on the same input, their outputs side by side: x ↦ [A_1 x | A_2 x | …].

    ``apply_blocks`` returns the pieces A_k x, so a sampled product gathers from each without
    concatenating; the adjoint sums A_kᵀ z_k.
    """

    def __init__(self, ops: list[LinearOp]):
        if not ops or len({op.size_in for op in ops}) != 1:
            raise ValueError("StackedOp needs at least one operator, all with the same size_in")
        self.ops = list(ops)
        self.size_in = ops[0].size_in
        self.size_out = sum(op.size_out for op in ops)

    def apply_blocks(self, x):
        return [op.apply(x) for op in self.ops]

    def apply(self, x):
        outs = self.apply_blocks(x)
        return torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]

    def adjoint(self, z):
        total, start = None, 0
        for op in self.ops:
            piece = op.adjoint(z[..., start : start + op.size_out])
            total = piece if total is None else total + piece
            start += op.size_out
        return total

    def cost(self, rows, native=False):
        return sum(op.cost(rows, native) for op in self.ops)

    def prepare(self, device, dtype):
        for op in self.ops:
            op.prepare(device, dtype)


__all__ = [
    "BlockDiagonalOp", "CoefficientOp", "ComposedOp", "CosineOp", "DwtLevel", "HartleyOp", "IdentityOp", "LinearOp",
    "RfftOp", "SpectrumOp", "SpreadOp", "StackedOp", "WalshHadamardOp", "WaveletCascadeOp", "block_diagonal", "cosine",
    "dwt_level", "fft_cost", "hartley", "identity", "rfft", "walsh_hadamard", "wavelet_cascade", "wavelet_filters",
]
