"""``SpectralAdapter``: a frozen linear layer plus a spectral update ΔW = α·B⁻¹(S).

    y = x W0ᵀ + b + x ΔWᵀ,      ΔW = α · B⁻¹(S),     S = scatter(coefficients → positions)

S is an out × in matrix that is zero except at the n stored ``positions`` (flat row-major
indices, a buffer, so they are saved with the state dict and never re-derived). The n
``coefficients`` are the only trainable values and start at zero, so the adapted layer computes
exactly what the base layer computes until the first optimizer step. :meth:`delta_weight` is
the single definition of ΔW that ``forward``, :meth:`merge` and :meth:`unmerge` all use.

How ``forward`` computes it is a *route* (``SpectralAdapter.route``, per instance or for the class;
see :mod:`spectral_peft.fastpath`): all routes compute the same function and gradients to float
tolerance, and ``"auto"`` picks the cheapest by shape and token count. Without a coefficient
gradient (``eval()`` under ``torch.no_grad()``, or frozen coefficients) the forward pass is one
matmul with a cached W0 + ΔW, so unmerged inference costs what the base layer costs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .bases import SpectralBasis
from .distributed import add_to_parameter, full_tensor, is_sharded
from .fastpath.functions import DenseLinear, MergedLinear, SparseLinear, sparse_delta_output
from .fastpath.plan import ROUTES, AdapterPlan, choose_route
from .tensor_version import version

_HALF = (torch.float16, torch.bfloat16)


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

    Precision: the coefficients are float32 for float32/float16/bfloat16 weights (float64 for
    float64), and *stay* float32 when the model is cast to half precision after injection
    (``model.to(torch.bfloat16)``, ``model.half()``): an optimizer step of lr·g on a coefficient is
    lost to bfloat16 rounding far more often than on a float32 one, and n coefficients cost nothing
    to keep precise (peft keeps its adapters in float32 for the same reason). ΔW, the 1-D transforms
    and the coefficient gradients are computed in the coefficients' precision; the frozen layer's
    own matmuls run in the autocast dtype inside ``torch.autocast``, else in the activations' dtype,
    exactly as the plain layer would. Casting to float64 casts the coefficients too.

    Attributes:
        route: how the forward/backward pass is computed: ``"auto"`` (default), ``"reference"``,
            ``"dense"``, ``"merged"``, ``"sparse"`` or ``"compact"`` (see
            :mod:`spectral_peft.fastpath.plan`). Set it on an instance, or on the class for every
            adapter; :func:`spectral_peft.set_route` sets it on every adapter of a model. The fast routes need an ``nn.Linear``/``Conv1D`` base
            and activations on its device (in its dtype, or any dtype under autocast); ``"auto"``
            falls back to ``"reference"`` otherwise. Under ``torch.compile``, ``"auto"`` takes
            ``"traced"`` (the sparse product in plain torch ops) so that the compiler sees no
            custom Function and no Python-side cache.

    The basis's factorization (its fast structure) is built once, here at injection, and again
    after the positions change or the module moves to another device or precision.
    """

    route: str = "auto"

    def __init__(self, base_layer: nn.Module, basis: SpectralBasis, positions: torch.Tensor, alpha: float = 1.0):
        super().__init__()
        # under torch.inference_mode the adapter's tensors would be inference tensors, which cannot
        # train later (no version counter, not saved for backward): they are made as normal tensors
        with torch.inference_mode(False):
            self._build(base_layer, basis, positions, alpha)

    def _build(self, base_layer, basis, positions, alpha) -> None:
        self.out_features, self.in_features = linear_weight_shape(base_layer)
        basis.check_shape(self.out_features, self.in_features)
        positions = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
        if positions.is_inference():  # (chosen under inference mode)
            positions = positions.clone()
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
        self._cache: tuple | None = None  # (key, ΔW) for the reference route
        self._weight_cache: tuple | None = None  # (key, W0 + ΔW) for inference
        self._plan: AdapterPlan | None = None
        self._plan_key: tuple | None = None
        self.last_route: str | None = None  # the route the last forward pass took (diagnostics)
        self.plan()

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
        key = (version(self.coefficients), self.coefficients.data_ptr(), dtype, self.alpha)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self.delta_weight().to(dtype))
        return self._cache[1]

    # ------------------------------------------------------------------ routes
    def base_weight(self) -> torch.Tensor:
        """W0 as an out × in tensor (a view of the base layer's weight)."""
        weight = self.base_layer.weight
        return weight.T if self.fan_in_fan_out else weight

    def plan(self) -> AdapterPlan | None:
        """The basis's factorization for this adapter (None if it has none: dense route only).

        Rebuilt when the positions, the device or the coefficients' dtype changed; inside a
        ``torch.compile`` trace the plan built before tracing is used as it is.
        """
        if torch.compiler.is_compiling():
            return self._plan
        if self.positions.is_meta:  # no values yet (meta-device init): built once they exist
            return None
        device, dtype = self.positions.device, self.coefficients.dtype
        key = (id(self.positions), version(self.positions), device, dtype, id(self.basis))
        if self._plan_key != key:
            with torch.inference_mode(False):  # its tensors serve training too
                factorization = self.basis.factorization(self.out_features, self.in_features, self.positions.cpu())
                self._plan = None if factorization is None else AdapterPlan(factorization, self.n, device, dtype)
            self._plan_key = key
        return self._plan

    def _apply(self, fn, recurse=True):
        """``Module._apply`` (``.to``, ``.half()``, ``.cuda()`` ...), keeping half-precision coefficients float32.

        A cast to float16/bfloat16 leaves the coefficients (and their gradient) in float32, with
        their exact values; the fast-route plan is rebuilt for the new device/precision.
        """
        before = self.coefficients.data
        grad_before = self.coefficients.grad
        super()._apply(fn, recurse)
        after = self.coefficients
        if after.dtype in _HALF and before.dtype not in _HALF:
            after.data = before.to(device=after.device)
            if grad_before is not None:
                after.grad = grad_before.to(device=after.device)
        self.clear_cache()
        self.plan()
        return self

    def _fast_ok(self, x: torch.Tensor) -> bool:
        base = self.base_layer
        weight = base.weight
        return (
            (type(base) is nn.Linear or self.fan_in_fan_out)
            and x.is_floating_point()
            and x.device == weight.device
            and x.shape[-1] == self.in_features
            and (x.dtype == weight.dtype or torch.is_autocast_enabled(x.device.type))
        )

    @staticmethod
    def _compute_dtype(x: torch.Tensor) -> torch.dtype:
        """The dtype the frozen layer's matmul runs in: autocast's, else the activations'."""
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return x.dtype

    def route_for(self, x: torch.Tensor) -> str:
        """The route ``forward(x)`` takes: the forced one, or the ``"auto"`` choice for this input."""
        route = self.route
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
        if route == "reference":
            return route
        fast_ok = self._fast_ok(x)
        if route != "auto":
            if not fast_ok:
                raise TypeError(
                    f"route {route!r} needs an nn.Linear/Conv1D base and activations on its device in the "
                    f"weight's dtype ({self.base_layer.weight.dtype}) or under autocast, got {x.dtype} on "
                    f"{x.device}; use route='auto' or 'reference'"
                )
            if route in ("merged", "sparse", "compact", "traced") and self.plan() is None:
                raise ValueError(
                    f"route {route!r} needs a factorization of basis {self.basis.name!r}, which has none; "
                    "use 'dense' (or 'auto')"
                )
            return route
        grad = torch.is_grad_enabled()
        needs_coefficient_grad = grad and self.coefficients.requires_grad
        base = self.base_layer
        base_trains = grad and (base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad))
        if not fast_ok:
            return "reference"
        plan = self.plan()
        if torch.compiler.is_compiling():  # no custom Function, no cache keyed by data pointers
            return "reference" if plan is None else "traced"
        if not needs_coefficient_grad and not base_trains:
            return "cached"
        if not needs_coefficient_grad:
            return "dense"
        tokens = x.numel() // max(self.in_features, 1)
        grad_input = grad and x.requires_grad
        if plan is None:
            return choose_route(tokens, self.out_features, self.in_features, grad_input, None)
        return plan.choose(tokens, grad_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        route = self.route_for(x)
        if not torch.compiler.is_compiling():
            self.last_route = route
        if route == "reference":
            return self.base_layer(x) + F.linear(x, self._delta_for_forward(x.dtype))
        bias = self.base_layer.bias
        if route == "cached":
            return F.linear(x, self.effective_weight(), bias)
        if route == "traced":
            y = self.base_layer(x)
            return y + sparse_delta_output(x, self.coefficients, self._plan, self.alpha).to(y.dtype)
        self._weight_cache = None  # training again: do not hold a weight-sized copy from inference
        weight = self.base_weight()
        dtype = self._compute_dtype(x)
        if route == "dense":
            return DenseLinear.apply(x, weight, bias, self.delta_weight(), self._delta_no_grad, dtype)
        plan = self.plan()
        if route == "merged":
            return MergedLinear.apply(x, weight, bias, self.coefficients, plan, self.alpha, self._delta_no_grad, dtype)
        program = plan.compact() if route == "compact" else plan
        return SparseLinear.apply(x, weight, bias, self.coefficients, program, self.alpha, dtype)

    @torch.no_grad()
    def _delta_no_grad(self) -> torch.Tensor:
        """ΔW without an autograd graph, by the fastest exact path (equal to :meth:`delta_weight`), as
        a new tensor that the caller owns (the training routes add W0 into it in place).

        With a factorization, ΔW = α·Lmat·K·Rmat through its 1-D operators (or its own builder);
        otherwise ``basis.inverse`` of S with α applied to the n coefficients first (linearity).
        """
        plan = self.plan()
        if plan is not None:
            return plan.delta(self.coefficients, self.alpha, self.positions)
        dense = self.coefficients.new_zeros(self.out_features * self.in_features)
        dense.index_put_((self.positions,), self.coefficients * self.alpha)
        return self.basis.inverse(dense.view(self.out_features, self.in_features))

    def effective_weight(self) -> torch.Tensor:
        """W0 + ΔW (out × in, weight dtype), cached while W0 and the coefficients are unchanged.

        Used by the forward pass when no coefficient gradient is needed (inference): one matmul,
        like the base layer. The cache costs one weight-sized tensor; :meth:`clear_cache` frees it.
        """
        weight = self.base_layer.weight
        coefficients = self.coefficients
        key = (
            version(coefficients), coefficients.data_ptr(), version(weight), weight.data_ptr(),
            version(self.positions), self.positions.data_ptr(), self.alpha, weight.dtype, id(self.basis),
        )
        if self._weight_cache is None or self._weight_cache[0] != key:
            self._weight_cache = None
            with torch.no_grad():
                self._weight_cache = (key, (self.base_weight() + self.delta_weight().to(weight.dtype)).contiguous())
        return self._weight_cache[1]

    def clear_cache(self) -> None:
        """Drop the cached ΔW / W0 + ΔW (they are rebuilt on demand)."""
        self._cache = None
        self._weight_cache = None

    @torch.no_grad()
    def merge(self, safe_merge: bool = False) -> None:
        """W0 ← W0 + ΔW (the forward pass then costs exactly what the base layer costs).

        With ``safe_merge`` (peft's name) the merged weight is checked first and ``ValueError`` is
        raised, leaving W0 unchanged, if ΔW or W0 + ΔW has a NaN or infinite entry. On a resharded
        FSDP2 layer the coefficients are gathered and each rank updates its own shard (use
        :func:`~spectral_peft.merge_and_unload`, which reshards first).
        """
        if self.merged:
            raise RuntimeError("adapter is already merged; call unmerge() first")
        self._add_to_weight(self._delta_for_merge(), require_finite=safe_merge)
        self.clear_cache()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W0 ← W0 − ΔW (exact up to the rounding of the weight dtype)."""
        if not self.merged:
            raise RuntimeError("adapter is not merged")
        self._add_to_weight(-self._delta_for_merge())
        self.clear_cache()
        self.merged = False

    def _delta_for_merge(self) -> torch.Tensor:
        """:meth:`delta_weight`, with the coefficients all-gathered first if they are sharded."""
        if not is_sharded(self.coefficients):
            return self.delta_weight()
        coefficients = full_tensor(self.coefficients)
        dense = coefficients.new_zeros(self.out_features * self.in_features).index_put((self.positions,), coefficients)
        return self.alpha * self.basis.inverse(dense.view(self.out_features, self.in_features))

    def _add_to_weight(self, delta: torch.Tensor, require_finite: bool = False) -> None:
        if require_finite and not torch.isfinite(delta).all():
            raise ValueError("ΔW contains NaN or inf entries (non-finite coefficients?); the weight was left unchanged")
        add_to_parameter(self.base_layer.weight, delta.T if self.fan_in_fan_out else delta, require_finite)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, n={self.n}, "
            f"basis={self.basis!r}, alpha={self.alpha}, merged={self.merged}"
        )
