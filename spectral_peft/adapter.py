"""``SpectralAdapter``: a frozen linear layer plus a spectral update ΔW = α·B⁻¹(S).

    y = x W0ᵀ + b + x ΔWᵀ,      ΔW = α · B⁻¹(S),     S = scatter(coefficients → positions)

S is an out × in matrix that is zero except at the n stored ``positions`` (flat row-major
indices, a buffer, so they are saved with the state dict and never re-derived). The n
``coefficients`` are the only trainable values and start at zero, so the adapted layer computes
exactly what the base layer computes until the first optimizer step. :meth:`delta_weight` is
the single definition of ΔW that ``forward``, :meth:`merge` and :meth:`unmerge` all use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .bases import SpectralBasis


def linear_weight_shape(layer: nn.Module) -> tuple[int, int]:
    """(out_features, in_features) of an ``nn.Linear`` or a transformers ``Conv1D`` (weight stored in × out)."""
    if isinstance(layer, nn.Linear):
        return layer.out_features, layer.in_features
    if is_conv1d(layer):
        return layer.weight.shape[1], layer.weight.shape[0]
    raise TypeError(
        f"spectral adapters wrap nn.Linear or transformers Conv1D layers, got {type(layer).__name__}"
    )


def is_conv1d(layer: nn.Module) -> bool:
    """Whether ``layer`` is transformers' GPT-2 style ``Conv1D`` (y = x W + b, W stored in × out)."""
    return type(layer).__name__ == "Conv1D" and hasattr(layer, "nf") and hasattr(layer, "weight")


class SpectralAdapter(nn.Module):
    """Wraps ``base_layer`` (frozen) and adds x·ΔWᵀ with ΔW = α·B⁻¹(S).

    Args:
        base_layer: the ``nn.Linear`` (or ``Conv1D``) to adapt; its weight and bias are frozen.
        basis: the spectral basis B.
        positions: flat indices (row-major into out × in) of the n trainable coefficients.
        alpha: the scale α.

    The coefficients are float32 for float32/float16/bfloat16 weights (float64 for float64); ΔW is
    computed in that precision and
    cast to the activation dtype for the forward pass, and to the weight dtype for merging.
    """

    def __init__(self, base_layer: nn.Module, basis: SpectralBasis, positions: torch.Tensor, alpha: float = 1.0):
        super().__init__()
        self.out_features, self.in_features = linear_weight_shape(base_layer)
        basis.check_shape(self.out_features, self.in_features)
        positions = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
        total = self.out_features * self.in_features
        if positions.numel() < 1 or positions.min() < 0 or positions.max() >= total:
            raise ValueError(
                f"positions must be 1..{total} flat indices in [0, {total}) for a "
                f"{self.out_features}x{self.in_features} weight"
            )
        if positions.unique().numel() != positions.numel():
            raise ValueError("positions must not contain duplicates")
        self.base_layer = base_layer
        self.basis = basis
        self.alpha = float(alpha)
        self.fan_in_fan_out = is_conv1d(base_layer)
        for param in base_layer.parameters():
            param.requires_grad_(False)
        device = base_layer.weight.device
        self.register_buffer("positions", positions.to(device))
        dtype = torch.promote_types(base_layer.weight.dtype, torch.float32)  # float32, or float64 for float64 layers
        self.coefficients = nn.Parameter(torch.zeros(positions.numel(), dtype=dtype, device=device))
        self.merged = False
        self._cache: tuple | None = None

    @property
    def n(self) -> int:
        """Number of trainable coefficients."""
        return self.coefficients.numel()

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's weight (so code that inspects ``.weight`` keeps working)."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def coefficient_matrix(self) -> torch.Tensor:
        """The dense out × in coefficient matrix S (zero except at ``positions``)."""
        dense = self.coefficients.new_zeros(self.out_features * self.in_features)
        dense = dense.index_put((self.positions,), self.coefficients)
        return dense.view(self.out_features, self.in_features)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = α · B⁻¹(S), float32, shape (out_features, in_features)."""
        return self.alpha * self.basis.inverse(self.coefficient_matrix())

    def _delta_for_forward(self, dtype: torch.dtype) -> torch.Tensor:
        """ΔW in ``dtype``; reused while the coefficients are unchanged and no gradient is needed."""
        needs_graph = torch.is_grad_enabled() and self.coefficients.requires_grad
        if needs_graph:
            self._cache = None
            return self.delta_weight().to(dtype)
        key = (self.coefficients._version, self.coefficients.data_ptr(), dtype, self.alpha)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self.delta_weight().to(dtype))
        return self._cache[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged:
            return out
        return out + F.linear(x, self._delta_for_forward(x.dtype))

    @torch.no_grad()
    def merge(self) -> None:
        """W0 ← W0 + ΔW (the forward pass then costs exactly what the base layer costs)."""
        if self.merged:
            raise RuntimeError("adapter is already merged; call unmerge() first")
        self._add_to_weight(self.delta_weight())
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W0 ← W0 − ΔW (exact up to the rounding of the weight dtype)."""
        if not self.merged:
            raise RuntimeError("adapter is not merged")
        self._add_to_weight(-self.delta_weight())
        self.merged = False

    def _add_to_weight(self, delta: torch.Tensor) -> None:
        weight = self.base_layer.weight
        if self.fan_in_fan_out:
            delta = delta.T
        compute = torch.promote_types(weight.dtype, torch.float32)
        weight.copy_((weight.to(compute) + delta.to(device=weight.device, dtype=compute)).to(weight.dtype))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, n={self.n}, "
            f"basis={self.basis!r}, alpha={self.alpha}, merged={self.merged}"
        )
