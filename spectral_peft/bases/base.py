"""The abstract :class:`SpectralBasis` every transform implements.

A basis is a linear map ``B`` from a real matrix ``W`` of shape ``(..., M, N)`` to a real
coefficient matrix ``C = B(W)`` of the same shape, and its inverse ``W = B⁻¹(C)``. Subclasses
implement :meth:`_forward` and :meth:`_inverse` on float32/float64 tensors; this class handles
dtype promotion (half precision is transformed in float32 and returned in the input dtype),
input validation and shape checks, so every basis behaves the same way at the edges.
"""

from __future__ import annotations

import abc

import torch

_COMPUTE_DTYPES = (torch.float32, torch.float64)


def radial_frequency(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``√((φ_u² + φ_v²)/2)`` for per-axis frequencies ``rows`` (M,) and ``cols`` (N,): an (M, N) map in [0, 1]."""
    return torch.sqrt((rows.double()[:, None] ** 2 + cols.double()[None, :] ** 2) / 2)


class SpectralBasis(abc.ABC):
    """A real linear transform ``B`` of ``(..., M, N)`` matrices, batched over leading dims.

    Class attributes:
        name: the registry name (set by :func:`register_basis`).
        orthonormal: ``True`` when ``‖B(W)‖_F = ‖W‖_F`` and ``B⁻¹ = Bᵀ``.
        invertible: ``True`` when ``B⁻¹(B(W)) = W`` for every ``W``.
    """

    name: str = "<unregistered>"
    orthonormal: bool = True
    invertible: bool = True

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """Coefficients ``C = B(W)`` of ``weight`` (shape ``(..., M, N)``), same shape and dtype."""
        return self._apply(self._forward, weight, "forward")

    def inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Matrix ``W = B⁻¹(C)`` from ``coefficients`` (shape ``(..., M, N)``), same shape and dtype."""
        return self._apply(self._inverse, coefficients, "inverse")

    def check_shape(self, rows: int, cols: int) -> None:
        """Raise ``ValueError`` if this basis cannot transform an ``rows × cols`` matrix."""
        if rows < 1 or cols < 1:
            raise ValueError(f"{self.name}: matrix dimensions must be >= 1, got {rows}x{cols}")

    @abc.abstractmethod
    def _forward(self, weight: torch.Tensor) -> torch.Tensor:
        """``B(W)`` for a float32/float64 tensor of shape ``(..., M, N)``."""

    @abc.abstractmethod
    def _inverse(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``B⁻¹(C)`` for a float32/float64 tensor of shape ``(..., M, N)``."""

    def _apply(self, fn, x: torch.Tensor, what: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}.{what} expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(
                f"{self.name}.{what} expects a tensor of shape (..., M, N) with at least 2 dims, "
                f"got shape {tuple(x.shape)}"
            )
        if x.is_complex() or not x.is_floating_point():
            raise TypeError(
                f"{self.name}.{what} expects a real floating-point tensor "
                f"(float16, bfloat16, float32 or float64), got {x.dtype}"
            )
        self.check_shape(x.shape[-2], x.shape[-1])
        if x.dtype in _COMPUTE_DTYPES:
            return fn(x)
        return fn(x.to(torch.float32)).to(x.dtype)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}(name={self.name!r}{', ' if options else ''}{options})"

    def options(self) -> dict:
        """The keyword options this instance was built with (for configs and manifests)."""
        return {}

    # ------------------------------------------------------------------ frequency map (optional)
    @property
    def has_frequency(self) -> bool:
        """Whether this basis states a frequency per position (:meth:`frequency`)."""
        return type(self).frequency is not SpectralBasis.frequency

    def frequency(self, rows: int, cols: int) -> torch.Tensor:
        """Frequency (or scale) of each coefficient position of an ``rows × cols`` matrix.

        A float64 ``(rows, cols)`` tensor in [0, 1]: 0 for the constant / coarsest function, values
        near 1 for the finest detail. Convention: each axis gets a frequency φ relative to Nyquist
        (φ = 1 alternates sign every sample) and a position gets ``√((φ_u² + φ_v²)/2)``
        (:func:`radial_frequency`). Bases override this optionally; selectors that rank by
        frequency (``band``) need it. The default raises ``NotImplementedError``.
        """
        raise NotImplementedError(
            f"basis {self.name!r} states no frequency per position (it does not override "
            "SpectralBasis.frequency), so frequency-based selection cannot use it"
        )
