"""Properties every registered basis must satisfy, parametrized over ``list_bases()``.

A basis added with one file and one ``@register_basis`` decorator is picked up here with no edit:
round trip, Parseval, linearity, batching, autograd (checked against finite differences),
half-precision handling, dtype/shape/device preservation and orthonormality of the dense matrix.
Properties that only hold for invertible / orthonormal bases are gated on the basis's own flags.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from spectral_peft import SpectralBasis, get_basis, list_bases
from tests.conftest import randn, seeds, shapes_for, small_shapes_for

BASES = list_bases()
CORE = ["dht", "dht_separable", "dft", "dct", "wavelet", "identity"]

# float64: exact up to rounding; float32: loose enough for O(log N) FFT/DWT error on <= 24 x 24.
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=2e-5),
}


def _close(actual, expected, dtype=torch.float64, scale=1.0, msg=""):
    tol = TOL[dtype]
    torch.testing.assert_close(
        actual, expected, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1.0), msg=msg or None
    )


# Every registered basis with its default options, plus a few non-default configurations
# (a non-invertible mode, other wavelet families and levels) that must satisfy the same contract
# within what their flags promise.
EXTRA_CONFIGS = [
    ("dft", {"fourierft_compat": True}),
    ("wavelet", {"wavelet": "haar"}),
    ("wavelet", {"wavelet": "coif1", "level": 1}),
    ("wavelet", {"wavelet": "sym4", "level": 2}),
    ("wht", {"order": "natural"}),
    ("patchwise", {"inner": "dht", "block": [2, 4]}),
    ("patchwise", {"inner": "wht", "block": 2, "levels": 2}),
    ("patchwise", {"inner": "dct", "block": 2, "levels": 3}),
    ("patchwise", {"inner": "dft", "block": 2, "inner_options": {"fourierft_compat": True}}),
]
CONFIGS = [(name, {}) for name in BASES] + [c for c in EXTRA_CONFIGS if c[0] in BASES]


def _config_id(config):
    name, options = config
    return name + "".join(f"[{k}={v}]" for k, v in options.items())


@pytest.fixture(params=CONFIGS, ids=[_config_id(c) for c in CONFIGS], scope="module")
def basis(request) -> SpectralBasis:
    name, options = request.param
    return get_basis(name, **options)


# Properties promised only by invertible / orthonormal bases run on exactly those configurations
# (decided from each basis's own flags when the tests are collected, so nothing is skipped).
INVERTIBLE = [c for c in CONFIGS if get_basis(c[0], **c[1]).invertible]
ORTHONORMAL = [c for c in CONFIGS if get_basis(c[0], **c[1]).orthonormal]


@pytest.fixture(params=INVERTIBLE, ids=[_config_id(c) for c in INVERTIBLE], scope="module")
def invertible_basis(request) -> SpectralBasis:
    return get_basis(request.param[0], **request.param[1])


@pytest.fixture(params=ORTHONORMAL, ids=[_config_id(c) for c in ORTHONORMAL], scope="module")
def orthonormal_basis(request) -> SpectralBasis:
    return get_basis(request.param[0], **request.param[1])


def test_registry_is_not_empty_and_contains_the_core_bases():
    for name in CORE:
        assert name in BASES


@pytest.mark.parametrize("name", CORE)
def test_core_bases_are_orthonormal_and_invertible_by_default(name):
    b = get_basis(name)
    assert b.orthonormal is True
    assert b.invertible is True


def test_basis_interface(basis):
    assert isinstance(basis, SpectralBasis)
    assert isinstance(basis.name, str) and basis.name
    assert isinstance(basis.orthonormal, bool)
    assert isinstance(basis.invertible, bool)
    if basis.orthonormal:
        # An orthonormal square map is invertible (its inverse is its transpose).
        assert basis.invertible


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(data=st.data(), seed=seeds, scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_inverse_of_forward_is_identity(invertible_basis, dtype, data, seed, scale):
    basis = invertible_basis
    M, N = data.draw(shapes_for(basis), label="shape")
    W = randn(M, N, seed=seed, dtype=dtype, scale=scale)
    W_before = W.clone()
    C = basis.forward(W)
    back = basis.inverse(C)
    assert torch.equal(W, W_before), "forward() modified its input in place"
    _close(back, W, dtype, scale=scale, msg=f"inverse(forward(W)) != W for {basis.name} {M}x{N} {dtype}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(data=st.data(), seed=seeds, scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_forward_of_inverse_is_identity(invertible_basis, dtype, data, seed, scale):
    basis = invertible_basis
    M, N = data.draw(shapes_for(basis), label="shape")
    C = randn(M, N, seed=seed, dtype=dtype, scale=scale)
    C_before = C.clone()
    W = basis.inverse(C)
    assert torch.equal(C, C_before), "inverse() modified its input in place"
    _close(basis.forward(W), C, dtype, scale=scale, msg=f"forward(inverse(C)) != C for {basis.name} {M}x{N}")


# --------------------------------------------------------------------------------------------
# Parseval and linearity
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@given(data=st.data(), seed=seeds)
def test_parseval(orthonormal_basis, dtype, data, seed):
    basis = orthonormal_basis
    M, N = data.draw(shapes_for(basis), label="shape")
    W = randn(M, N, seed=seed, dtype=dtype)
    C = basis.forward(W)
    nW = torch.linalg.vector_norm(W)
    torch.testing.assert_close(torch.linalg.vector_norm(C), nW, **TOL[dtype])
    # and for the inverse map
    torch.testing.assert_close(torch.linalg.vector_norm(basis.inverse(W)), nW, **TOL[dtype])


@given(
    data=st.data(),
    seed=seeds,
    a=st.floats(min_value=-10, max_value=10, allow_nan=False),
    b=st.floats(min_value=-10, max_value=10, allow_nan=False),
)
def test_linearity(basis, data, seed, a, b):
    M, N = data.draw(shapes_for(basis), label="shape")
    X = randn(M, N, seed=seed)
    Y = randn(M, N, seed=seed + 1)
    scale = 1.0 + abs(a) + abs(b)
    _close(basis.forward(a * X + b * Y), a * basis.forward(X) + b * basis.forward(Y), scale=scale)
    _close(basis.inverse(a * X + b * Y), a * basis.inverse(X) + b * basis.inverse(Y), scale=scale)


def test_zero_maps_to_zero(basis):
    for M, N in small_shapes_for(basis):
        Z = torch.zeros(M, N, dtype=torch.float64)
        assert torch.count_nonzero(basis.forward(Z)) == 0
        assert torch.count_nonzero(basis.inverse(Z)) == 0


# --------------------------------------------------------------------------------------------
# Batching, dtype, shape, device
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lead", [(2,), (2, 3)])
@given(data=st.data(), seed=seeds)
def test_batched_equals_loop(basis, lead, data, seed):
    M, N = data.draw(shapes_for(basis, max_side=8), label="shape")
    W = randn(*lead, M, N, seed=seed)
    for fn in (basis.forward, basis.inverse):
        out = fn(W)
        assert out.shape == W.shape
        flat_in = W.reshape(-1, M, N)
        flat_out = out.reshape(-1, M, N)
        for i in range(flat_in.shape[0]):
            _close(flat_out[i], fn(flat_in[i]), msg=f"{basis.name}: batch element {i} differs")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_shape_device_preserved(basis, dtype, device):
    for M, N in small_shapes_for(basis):
        W = randn(M, N, seed=M * 31 + N, dtype=dtype, device=device)
        for fn in (basis.forward, basis.inverse):
            out = fn(W)
            assert isinstance(out, torch.Tensor)
            assert out.dtype == dtype
            assert out.shape == (M, N)
            assert out.device == W.device
            assert not torch.is_complex(out)


def test_non_contiguous_input(basis):
    shapes = [s for s in small_shapes_for(basis) if s[0] > 1 and s[1] > 1]
    for M, N in shapes:
        base = randn(N, M, seed=7)
        W = base.t()  # (M, N), non-contiguous
        assert not W.is_contiguous()
        _close(basis.forward(W), basis.forward(W.contiguous()))
        _close(basis.inverse(W), basis.inverse(W.contiguous()))


@pytest.mark.parametrize(
    # rounding a float32 result to the half type costs at most 2**-11 (float16) or 2**-8
    # (bfloat16) relative error; computing in the half type itself would cost several times that.
    "half, rtol",
    [(torch.float16, 1e-3), (torch.bfloat16, 8e-3)],
)
def test_half_precision_input_computed_in_float32(basis, half, rtol):
    for M, N in small_shapes_for(basis):
        W = randn(M, N, seed=3, dtype=torch.float32).to(half)
        for fn in (basis.forward, basis.inverse):
            out = fn(W)
            assert out.dtype == half, f"{basis.name}: {half} input returned {out.dtype}"
            assert out.shape == (M, N)
            ref = fn(W.float())  # the same half-precision values, transformed in float32
            assert torch.isfinite(out).all()
            scale = ref.abs().max().item()
            torch.testing.assert_close(out.float(), ref, rtol=rtol, atol=1e-4 * max(scale, 1e-3))


# --------------------------------------------------------------------------------------------
# Autograd (finite differences are the oracle)
# --------------------------------------------------------------------------------------------
GRAD_SHAPES = [(1, 1), (1, 4), (3, 1), (3, 4), (4, 3), (2, 2), (4, 4), (4, 8)]


@pytest.mark.parametrize("which", ["forward", "inverse"])
def test_gradcheck(basis, which):
    fn = getattr(basis, which)
    for M, N in small_shapes_for(basis, GRAD_SHAPES):
        W = randn(M, N, seed=11).requires_grad_(True)
        assert torch.autograd.gradcheck(fn, (W,), eps=1e-6, atol=1e-6, rtol=1e-5), (M, N)
        # batched input too
        Wb = randn(2, M, N, seed=12).requires_grad_(True)
        assert torch.autograd.gradcheck(fn, (Wb,), eps=1e-6, atol=1e-6, rtol=1e-5), (2, M, N)


def test_backward_float32_runs(basis):
    M, N = small_shapes_for(basis)[-1]
    W = randn(M, N, seed=5, dtype=torch.float32).requires_grad_(True)
    G = randn(M, N, seed=6, dtype=torch.float32)
    (basis.forward(W) * G).sum().backward()
    assert W.grad is not None and W.grad.dtype == torch.float32 and W.grad.shape == (M, N)
    assert torch.isfinite(W.grad).all()


# --------------------------------------------------------------------------------------------
# Orthonormality as a dense matrix
# --------------------------------------------------------------------------------------------
def _dense_matrix(fn, M, N):
    """Column j of Q is fn(e_j) flattened, e_j the j-th unit matrix (row-major)."""
    E = torch.eye(M * N, dtype=torch.float64).reshape(M * N, M, N)
    return fn(E).reshape(M * N, M * N).T  # batched application, column = image of e_j


def _dense_matrix_loop(fn, M, N):
    cols = []
    for j in range(M * N):
        e = torch.zeros(M * N, dtype=torch.float64)
        e[j] = 1.0
        cols.append(fn(e.reshape(M, N)).reshape(-1))
    return torch.stack(cols, dim=1)


def test_dense_matrix_is_orthogonal(orthonormal_basis):
    basis = orthonormal_basis
    for M, N in small_shapes_for(basis):
        Q = _dense_matrix_loop(basis.forward, M, N)
        P = _dense_matrix_loop(basis.inverse, M, N)
        I = torch.eye(M * N, dtype=torch.float64)
        _close(Q.T @ Q, I, msg=f"{basis.name} {M}x{N}: Q^T Q != I")
        _close(Q @ Q.T, I, msg=f"{basis.name} {M}x{N}: Q Q^T != I")
        # the inverse of an orthonormal map is its transpose
        _close(P, Q.T, msg=f"{basis.name} {M}x{N}: inverse matrix != forward matrix transposed")
        # the batched application builds the same matrix
        _close(_dense_matrix(basis.forward, M, N), Q)


def test_dense_matrix_invertible(invertible_basis):
    basis = invertible_basis
    for M, N in small_shapes_for(basis):
        Q = _dense_matrix_loop(basis.forward, M, N)
        P = _dense_matrix_loop(basis.inverse, M, N)
        I = torch.eye(M * N, dtype=torch.float64)
        _close(P @ Q, I)
        _close(Q @ P, I)
