"""Separable multi-level 2-D discrete wavelet basis (WaveFT), periodized and orthonormal.

One level along an axis of even length L with an orthogonal filter pair (h = dec_lo,
g = dec_hi) of length F, in PyWavelets' "periodization" convention:

    a[k] = Σ_j h[j]·x[(2k + F/2 − j) mod L],   d[k] = Σ_j g[j]·x[(2k + F/2 − j) mod L],

and the axis is laid out as [a | d]. The 2-D transform applies this along rows and columns,
giving the quadrants [[aa, ad], [da, dd]], and recurses on the top-left ``aa`` block for each
further level. The result equals ``pywt.coeffs_to_array(pywt.wavedec2(W, wavelet,
mode="periodization", level=level))[0]``. Periodization of an orthogonal filter bank is an
orthogonal matrix, so the inverse is the adjoint (a scatter of the same windows).

Levels: level ℓ needs both M and N divisible by 2^ℓ. The default is the deepest such level,
capped at ``pywt.dwt_max_level(min(M, N), F)`` (deeper levels only wrap the filter around the
signal) and at least 1.
"""

from __future__ import annotations

import functools

import numpy as np
import pywt
import torch

from .base import SpectralBasis
from .registry import register_basis


def _divisible_levels(size: int) -> int:
    """Largest ℓ with size divisible by 2^ℓ."""
    level = 0
    while size % 2 == 0 and size > 0:
        size //= 2
        level += 1
    return level


@functools.lru_cache(maxsize=256)
def _periodic_extension(length: int, filter_len: int) -> np.ndarray:
    """Indices of the periodic extension x[(2k + start + t) mod L] read by the analysis windows."""
    start = 1 - filter_len // 2
    return (start + np.arange(length + filter_len - 2)) % length


class _FilterBank:
    """One level of periodized analysis/synthesis along the last axis, as strided convolutions.

    Analysis is a stride-2 cross-correlation of the periodic extension with the reversed
    filters; synthesis is its adjoint: a stride-2 transposed convolution whose overhang is
    folded back onto the signal (periodic wrap).
    """

    def __init__(self, wavelet: pywt.Wavelet):
        lo = np.asarray(wavelet.dec_lo, dtype=np.float64)[::-1]
        hi = np.asarray(wavelet.dec_hi, dtype=np.float64)[::-1]
        self.filters = torch.from_numpy(np.stack([lo, hi])[:, None, :].copy())  # (2, 1, F)
        self.filter_len = len(lo)

    def _weights(self, x: torch.Tensor) -> torch.Tensor:
        return self.filters.to(device=x.device, dtype=x.dtype)

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        extension = torch.as_tensor(_periodic_extension(length, self.filter_len), device=x.device)
        ext = x.reshape(-1, 1, length).index_select(-1, extension)
        out = torch.nn.functional.conv1d(ext, self._weights(x), stride=2)  # (B, 2, L/2)
        return out.reshape(x.shape)

    def synthesis(self, c: torch.Tensor) -> torch.Tensor:
        length = c.shape[-1]
        start = 1 - self.filter_len // 2
        full = torch.nn.functional.conv_transpose1d(
            c.reshape(-1, 2, length // 2), self._weights(c), stride=2
        ).squeeze(1)  # entry o belongs to x[(o + start) mod L]
        wraps = -(-full.shape[-1] // length)
        full = torch.nn.functional.pad(full, (0, wraps * length - full.shape[-1]))
        folded = full.reshape(full.shape[0], wraps, length).sum(dim=1)
        return torch.roll(folded, shifts=start, dims=-1).reshape(c.shape)


@register_basis("wavelet")
class WaveletBasis(SpectralBasis):
    """Multi-level separable 2-D DWT with an orthogonal PyWavelets family, periodization mode.

    Args:
        wavelet: an orthogonal PyWavelets family member (``haar``, ``db1``–``db38``,
            ``sym2``–``sym20``, ``coif1``–``coif17``). Biorthogonal families are rejected.
        level: number of decomposition levels (>= 1), or None for the deepest level that
            both dimensions allow (see the module docstring).
    """

    def __init__(self, wavelet: str = "db4", level: int | None = None):
        try:
            family = pywt.Wavelet(wavelet)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"unknown wavelet {wavelet!r}; use an orthogonal PyWavelets family: "
                f"{', '.join(pywt.wavelist('haar') + pywt.wavelist('db')[:3] + pywt.wavelist('sym')[:2] + pywt.wavelist('coif')[:2])}, ..."
            ) from err
        if not family.orthogonal:
            raise ValueError(
                f"wavelet {wavelet!r} is not orthogonal (the basis must be orthonormal); "
                "use haar, db*, sym* or coif*"
            )
        if level is not None and (not isinstance(level, (int, np.integer)) or isinstance(level, bool) or level < 1):
            raise ValueError(f"level must be an integer >= 1 or None, got {level!r}")
        self.wavelet = wavelet
        self.level = None if level is None else int(level)
        self._bank = _FilterBank(family)

    def options(self) -> dict:
        return {"wavelet": self.wavelet, "level": self.level}

    def levels_for(self, rows: int, cols: int) -> int:
        """The number of levels used for an ``rows × cols`` matrix (raises if impossible)."""
        allowed = min(_divisible_levels(rows), _divisible_levels(cols))
        if allowed < 1:
            raise ValueError(
                f"wavelet basis needs both dimensions even (periodized DWT halves them), got {rows}x{cols}"
            )
        if self.level is None:
            cap = pywt.dwt_max_level(min(rows, cols), self._bank.filter_len)
            return max(1, min(allowed, cap))
        if self.level > allowed:
            raise ValueError(
                f"wavelet level {self.level} needs both dimensions divisible by 2**{self.level}="
                f"{2 ** self.level}, got {rows}x{cols}; the deepest level this shape allows is {allowed}"
            )
        return self.level

    def check_shape(self, rows: int, cols: int) -> None:
        super().check_shape(rows, cols)
        self.levels_for(rows, cols)

    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        levels = self.levels_for(*weight.shape[-2:])
        return self._forward_levels(weight, levels)

    def _forward_levels(self, x: torch.Tensor, levels: int) -> torch.Tensor:
        x = self._bank.analysis(self._bank.analysis(x.transpose(-1, -2)).transpose(-1, -2))
        if levels == 1:
            return x
        rows, cols = x.shape[-2] // 2, x.shape[-1] // 2
        top_left = self._forward_levels(x[..., :rows, :cols], levels - 1)
        top = torch.cat([top_left, x[..., :rows, cols:]], dim=-1)
        return torch.cat([top, x[..., rows:, :]], dim=-2)

    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        levels = self.levels_for(*coefficients.shape[-2:])
        return self._inverse_levels(coefficients, levels)

    def _inverse_levels(self, c: torch.Tensor, levels: int) -> torch.Tensor:
        if levels > 1:
            rows, cols = c.shape[-2] // 2, c.shape[-1] // 2
            top_left = self._inverse_levels(c[..., :rows, :cols], levels - 1)
            top = torch.cat([top_left, c[..., :rows, cols:]], dim=-1)
            c = torch.cat([top, c[..., rows:, :]], dim=-2)
        return self._bank.synthesis(self._bank.synthesis(c).transpose(-1, -2)).transpose(-1, -2)

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        """Scale of each position of the pyramid, as a frequency relative to Nyquist.

        Position (i, j) belongs to the level-ℓ quadrant with the smallest ℓ for which i ≥ M/2^ℓ or
        j ≥ N/2^ℓ (else to the approximation block of the deepest level L). Along each axis it is a
        detail of level ℓ (band [2^-ℓ, 2^-ℓ+1] of Nyquist, centre φ = 1.5·2^-ℓ) or an
        approximation (band [0, 2^-ℓ], centre φ = 0.5·2^-ℓ); the map is the radial combination.
        """
        levels = self.levels_for(rows, cols)
        i = torch.arange(rows)[:, None].expand(rows, cols)
        j = torch.arange(cols)[None, :].expand(rows, cols)
        level = torch.full((rows, cols), levels)
        for ell in range(levels, 0, -1):  # finer levels overwrite: the smallest ℓ wins
            outside = (i >= rows >> ell) | (j >= cols >> ell)
            level = torch.where(outside, torch.full_like(level, ell), level)
        scale = 2.0 ** (-level.double())
        phi_rows = torch.where(i >= rows >> level, 1.5, 0.5) * scale
        phi_cols = torch.where(j >= cols >> level, 1.5, 0.5) * scale
        return torch.sqrt((phi_rows**2 + phi_cols**2) / 2)
