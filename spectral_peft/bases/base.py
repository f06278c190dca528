"""The abstract :class:`SpectralBasis` every transform implements.

A basis is a linear map ``B`` from a real matrix ``W`` of shape ``(..., M, N)`` to a real
coefficient matrix ``C = B(W)`` of the same shape, and its inverse ``W = B⁻¹(C)``. Subclasses
implement :meth:`_forward` and :meth:`_inverse` on float32/float64 tensors; this class handles
dtype promotion (half precision is transformed in float32 and returned in the input dtype),
input validation and shape checks, so every basis behaves the same way at the edges.

A basis may also declare its fast structure, :meth:`SpectralBasis.factorization`; the adapter's
fast routes are built from it and need nothing else from the basis (see the class docstring).
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

    A new basis is one module in ``spectral_peft/bases/`` (or anywhere, once imported) with
    ``@register_basis("name")`` on a subclass that implements :meth:`_forward` and
    :meth:`_inverse`. That is enough to train: the adapter then builds ΔW = α·B⁻¹(S) densely.

    Fast route (optional). If B⁻¹ of a matrix S with n nonzeros can be written with 1-D
    operators ``L`` (M × Q) and ``R`` (P × N) from :mod:`spectral_peft.operators` as

        B⁻¹(S) = L · K · R,    K[q_e, p_e] += w_e · S[positions[j_e]]   (a few entries per coefficient)

    return that from :meth:`factorization` as a :class:`spectral_peft.factorization.Factorization`.
    The adapter then trains without forming the M × N update (it transforms the activations along
    the feature dimension instead; the route is chosen by a cost model, per layer and token count)
    and works in float32, bfloat16/float16 (autocast or a half model) and under ``torch.compile``.
    The contract, checked for every registered basis by ``tests/test_fastpath.py``:

    * ``factorization(M, N, positions)`` for every shape that :meth:`check_shape` accepts, with
      ``positions`` the n flat row-major indices ``u·N + v``; the result must equal
      ``self.inverse`` (``Factorization.dense`` is compared with it in float64);
    * it runs once per adapter at injection (plain Python and torch on the CPU; no need to be
      fast or traceable), never inside the forward pass;
    * return None (the default) for the dense route.

    For a separable basis, C = A_M W A_Nᵀ with orthonormal 1-D transforms, the factorization is
    :func:`spectral_peft.factorization.separable` of the two operators, and the dense transforms
    are the same operators' ``coefficients`` / ``synthesize``. A worked example (the DCT along
    the rows, nothing along the columns), complete with its fast route::

        from spectral_peft import operators
        from spectral_peft.bases import SpectralBasis, register_basis
        from spectral_peft.factorization import separable

        @register_basis("dct_rows")
        class RowCosineBasis(SpectralBasis):
            '''C = D_M W: the orthonormal DCT-II of every column.'''

            def _forward(self, weight):
                return operators.cosine(weight.shape[-2]).coefficients(weight, dim=-2)

            def _inverse(self, coefficients):
                return operators.cosine(coefficients.shape[-2]).synthesize(coefficients, dim=-2)

            def factorization(self, rows, cols, positions):
                return separable(operators.cosine(rows), operators.identity(cols), positions)

    A non-separable basis lists its terms as :class:`~spectral_peft.factorization.Entries`
    (see ``hartley.py``: cas(a+b) = cas(a)·cos(b) + cas(−a)·sin(b) gives two entries per
    coefficient, ``fourier.py``, and ``wavelet.py`` for a multi-level pyramid). A subclass inherits
    its parent's factorization; one that changes the transform must override it too.
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

    def shape_error(self, rows: int, cols: int) -> str | None:
        """Why this basis cannot transform an ``rows × cols`` matrix (:meth:`check_shape`'s message),
        or None if it can."""
        try:
            self.check_shape(rows, cols)
        except ValueError as err:
            return str(err)
        return None

    def factorization(self, rows: int, cols: int, positions: torch.Tensor):
        """B⁻¹ for ``rows × cols`` matrices with nonzeros at ``positions``, as 1-D operators.

        Returns a :class:`spectral_peft.factorization.Factorization`, or None (the default) when
        the basis has no fast structure: the adapter then uses the dense route. See the class
        docstring for the contract and a worked example.
        """
        return None

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
