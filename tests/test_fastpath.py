"""Every route of the adapter agrees with the definition, for every registered basis.

The reference is y = x (W0 + ΔW)ᵀ + b with ΔW = ``delta_weight()`` differentiated by plain
autograd. Each route ("dense", and "merged"/"sparse"/"compact"/"traced" where the basis has a factorization, and
"auto") must reproduce y and the gradients of x, the coefficients and (when unfrozen) the bias
and W0, in float64 to ~1e-9, on hypothesis-drawn shapes (square, non-square, odd where the basis
allows). Parametrized over ``list_bases()``: a newly registered basis is covered with no edit.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from spectral_peft import (
    SpectralAdapter,
    SpectralBasis,
    SpectralConfig,
    get_basis,
    inject,
    list_bases,
    merge_and_unload,
    register_basis,
    set_route,
    unregister_basis,
)
from spectral_peft import operators
from spectral_peft.factorization import separable
from spectral_peft.fastpath import ROUTES
from spectral_peft.fastpath.plan import choose_route
from tests.conftest import randn, seeds, shapes_for


class HartleyRowsCosineColumns(SpectralBasis):
    """A basis written as the SpectralBasis docstring says, outside the package: C = H_M W D_Nᵀ.

    The DHT along the rows and the DCT-II along the columns, dense transforms and fast route both
    from the public operators; nothing else is declared.
    """

    def _forward(self, weight):
        rows, cols = weight.shape[-2:]
        return operators.cosine(cols).coefficients(operators.hartley(rows).coefficients(weight, dim=-2), dim=-1)

    def _inverse(self, coefficients):
        rows, cols = coefficients.shape[-2:]
        return operators.hartley(rows).synthesize(operators.cosine(cols).synthesize(coefficients, dim=-1), dim=-2)

    def factorization(self, rows, cols, positions):
        return separable(operators.hartley(rows), operators.cosine(cols), positions)


def _builtin_subclass(name):
    """An unregistered subclass of a built-in basis that changes nothing: it inherits the fast route."""
    return type(f"Sub{type(get_basis(name)).__name__}", (type(get_basis(name)),), {})


BASES = list_bases()
# Non-default options whose fast paths differ from the defaults', and a basis defined here.
VARIANTS = (
    [(name, {}) for name in BASES]
    + [
        ("dft", {"fourierft_compat": True}),
        ("wavelet", {"wavelet": "haar", "level": 1}),
        ("wavelet", {"wavelet": "sym3"}),
        ("wht", {"order": "natural"}),
        ("patchwise", {"inner": "dht", "block": [2, 4]}),
        ("patchwise", {"inner": "wavelet", "block": 4, "inner_options": {"wavelet": "haar"}}),
        ("patchwise", {"inner": "dct", "block": 2, "levels": 2}),
        ("patchwise", {"inner": "dht", "block": [2, 4], "levels": 3}),
        ("patchwise", {"inner": "wavelet", "block": 2, "levels": 2, "inner_options": {"wavelet": "haar"}}),
    ]
    + [(HartleyRowsCosineColumns, {})]
)


def _variant_id(name, options):
    label = name if isinstance(name, str) else name.__name__
    return f"{label}{'-' + '-'.join(f'{k}={v}' for k, v in options.items()) if options else ''}"


VARIANT_IDS = [_variant_id(n, o) for n, o in VARIANTS]


def _routes(adapter) -> list[str]:
    return ["dense"] + (["merged", "sparse", "compact", "traced"] if adapter.plan() is not None else [])


def _make(basis, shape, n, seed, dtype=torch.float64, bias=True, alpha=1.3):
    rows, cols = shape
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(cols, rows, bias=bias).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(rows, cols, generator=g, dtype=torch.float64))
        if bias:
            layer.bias.copy_(torch.randn(rows, generator=g, dtype=torch.float64))
    positions = torch.randperm(rows * cols, generator=g)[:n]
    adapter = SpectralAdapter(layer, basis, positions, alpha=alpha)
    with torch.no_grad():
        adapter.coefficients.copy_(torch.randn(n, generator=g, dtype=torch.float64))
    return adapter


def _run(adapter, x, g, route=None):
    """(y, dL/dx, dL/dc, dL/db, dL/dW0) for L = <y, g> through the adapter's forward."""
    if route is not None:
        adapter.route = route
    params = [adapter.coefficients] + [p for p in adapter.base_layer.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    x = x.clone().requires_grad_(True)
    y = adapter(x)
    (y * g).sum().backward()
    base = adapter.base_layer
    return (
        y.detach(),
        x.grad,
        adapter.coefficients.grad,
        None if base.bias is None else base.bias.grad,
        base.weight.grad,
    )


def _reference(adapter, x, g):
    """The same quantities through the definition: F.linear(x, W0 + delta_weight(), b)."""
    params = [adapter.coefficients] + [p for p in adapter.base_layer.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    x = x.clone().requires_grad_(True)
    y = F.linear(x, adapter.base_weight() + adapter.delta_weight(), adapter.base_layer.bias)
    (y * g).sum().backward()
    base = adapter.base_layer
    return (
        y.detach(),
        x.grad,
        adapter.coefficients.grad,
        None if base.bias is None else base.bias.grad,
        base.weight.grad,
    )


def _assert_same(actual, expected, tol=1e-9, what=""):
    names = ["y", "grad x", "grad coefficients", "grad bias", "grad W0"]
    for name, a, e in zip(names, actual, expected):
        if e is None:
            assert a is None, f"{what}: {name} should be None"
            continue
        assert a is not None, f"{what}: {name} missing"
        scale = max(1.0, e.abs().max().item())
        torch.testing.assert_close(a, e, rtol=tol, atol=tol * scale, msg=f"{what}: {name}")


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS, scope="module")
def basis(request):
    name, options = request.param
    return get_basis(name, **options) if isinstance(name, str) else name(**options)


# ------------------------------------------------------------------------------------------------
# The factorization itself
# ------------------------------------------------------------------------------------------------
@given(data=st.data(), seed=seeds)
def test_factorization_equals_inverse(basis, data, seed):
    rows, cols = data.draw(shapes_for(basis, max_side=14), label="shape")
    n = data.draw(st.integers(1, rows * cols), label="n")
    positions = torch.randperm(rows * cols, generator=torch.Generator().manual_seed(seed))[:n]
    factorization = basis.factorization(rows, cols, positions)
    if factorization is None:
        return
    c = randn(n, seed=seed)
    dense = torch.zeros(rows * cols, dtype=torch.float64)
    dense[positions] = c
    expected = basis.inverse(dense.view(rows, cols))
    torch.testing.assert_close(factorization.dense(c), expected, rtol=1e-10, atol=1e-10)
    if factorization.inverse is not None:
        torch.testing.assert_close(factorization.inverse(dense.view(rows, cols).clone()), expected, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# Every route against the definition
# ------------------------------------------------------------------------------------------------
@settings(max_examples=25)
@given(data=st.data(), seed=seeds)
def test_routes_match_reference(basis, data, seed):
    shape = data.draw(shapes_for(basis, max_side=16), label="shape")
    n = data.draw(st.integers(1, min(shape[0] * shape[1], 40)), label="n")
    lead = data.draw(st.sampled_from([(1,), (3,), (2, 5), (7,)]), label="leading dims")
    bias = data.draw(st.booleans(), label="bias")
    adapter = _make(basis, shape, n, seed, bias=bias)
    x = randn(*lead, shape[1], seed=seed + 1)
    g = randn(*lead, shape[0], seed=seed + 2)
    expected = _reference(adapter, x, g)
    for route in _routes(adapter) + ["auto", "reference"]:
        _assert_same(_run(adapter, x, g, route), expected, what=f"{basis!r} {shape} route={route}")


@pytest.mark.parametrize("route", ["dense", "merged", "sparse", "compact"])
def test_unfrozen_base_and_input_without_grad(basis, route):
    """Gradients of W0 and b when someone unfreezes them; no x gradient when x needs none."""
    shape = next(s for s in [(8, 12), (12, 8), (8, 8), (6, 10), (8, 16)] if _supports(basis, s))
    adapter = _make(basis, shape, 9, seed=3)
    adapter.base_layer.weight.requires_grad_(True)
    adapter.base_layer.bias.requires_grad_(True)
    x = randn(4, shape[1], seed=4)
    g = randn(4, shape[0], seed=5)
    if route != "dense" and adapter.plan() is None:
        # a basis without a factorization has only the dense routes: forcing a fast one is an error
        with pytest.raises(ValueError, match="needs a factorization"):
            _run(adapter, x, g, route)
        return
    _assert_same(_run(adapter, x, g, route), _reference(adapter, x, g), what=route)
    # x without grad: only parameter gradients
    adapter.route = route
    y = adapter(x)
    (y * g).sum().backward()
    assert adapter.coefficients.grad is not None


def _supports(basis, shape):
    try:
        basis.check_shape(*shape)
    except ValueError:
        return False
    return True


def test_routes_float32(basis):
    shape = next(s for s in [(24, 40), (40, 24), (32, 32), (16, 48)] if _supports(basis, s))
    adapter = _make(basis, shape, 50, seed=7, dtype=torch.float32)
    x = randn(6, 9, shape[1], seed=8, dtype=torch.float32)
    g = randn(6, 9, shape[0], seed=9, dtype=torch.float32)
    expected = _reference(adapter, x, g)
    for route in _routes(adapter):
        _assert_same(_run(adapter, x, g, route), expected, tol=2e-4, what=f"float32 {route}")


def test_conv1d_base_layer(basis):
    """transformers' Conv1D (weight stored in × out) goes through the same routes."""
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    shape = next(s for s in [(8, 12), (12, 8), (8, 8), (6, 10), (8, 16)] if _supports(basis, s))
    rows, cols = shape
    layer = Conv1D(rows, cols).double()
    with torch.no_grad():
        layer.weight.copy_(randn(cols, rows, seed=1))
        layer.bias.copy_(randn(rows, seed=2))
    adapter = SpectralAdapter(layer, basis, torch.arange(0, rows * cols, 3), alpha=0.7)
    with torch.no_grad():
        adapter.coefficients.copy_(randn(adapter.n, seed=3))
    x, g = randn(5, cols, seed=4), randn(5, rows, seed=5)
    expected = _reference(adapter, x, g)
    for route in _routes(adapter) + ["auto"]:
        _assert_same(_run(adapter, x, g, route), expected, what=f"Conv1D {route}")


# ------------------------------------------------------------------------------------------------
# Inference: cached W0 + ΔW, merge
# ------------------------------------------------------------------------------------------------
def test_inference_uses_cached_weight_and_tracks_updates(basis):
    shape = next(s for s in [(16, 24), (24, 16), (16, 16)] if _supports(basis, s))
    adapter = _make(basis, shape, 20, seed=11)
    x = randn(3, shape[1], seed=12)
    with torch.no_grad():
        y1 = adapter(x)
        assert adapter.last_route == "cached"
        cached = adapter.effective_weight()
        assert adapter(x).data_ptr() != 0 and adapter.effective_weight() is cached  # reused
        expected = F.linear(x, adapter.base_weight() + adapter.delta_weight(), adapter.base_layer.bias)
        torch.testing.assert_close(y1, expected, rtol=1e-10, atol=1e-10)
        adapter.coefficients.add_(1.0)  # an optimizer step changes the coefficients in place
        y2 = adapter(x)
        assert adapter.effective_weight() is not cached
        expected = F.linear(x, adapter.base_weight() + adapter.delta_weight(), adapter.base_layer.bias)
        torch.testing.assert_close(y2, expected, rtol=1e-10, atol=1e-10)
    adapter(x.requires_grad_(True)).sum().backward()  # training again drops the inference copy
    assert adapter.last_route != "cached" and adapter._weight_cache is None
    adapter.coefficients.requires_grad_(False)  # frozen coefficients: cached even with grad enabled
    assert adapter.route_for(x.detach()) == "cached"


def test_merge_and_unload_matches_every_route():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 8)).double()
    inject(model, SpectralConfig(basis="dht", n=30, selector="random", target_modules=["0", "2"]))
    for adapter in model.modules():
        if isinstance(adapter, SpectralAdapter):
            with torch.no_grad():
                adapter.coefficients.normal_()
    x = randn(5, 12, seed=1)
    outputs = {}
    for route in ROUTES:
        set_route(model, route)
        outputs[route] = model(x).detach()
    plain = merge_and_unload(model)
    assert not any(isinstance(m, SpectralAdapter) for m in plain.modules())
    merged = plain(x)
    for route, y in outputs.items():
        torch.testing.assert_close(y, merged, rtol=1e-10, atol=1e-10, msg=route)


# ------------------------------------------------------------------------------------------------
# Route selection and the extension points
# ------------------------------------------------------------------------------------------------
def test_auto_route_depends_on_tokens():
    plan = _make(get_basis("dht"), (384, 384), 1000, seed=0, dtype=torch.float32).plan()
    assert choose_route(8, 384, 384, True, plan) == "sparse"  # a few tokens: never form ΔW
    assert choose_route(8, 384, 384, True, None) == "dense"  # no factorization: dense
    big = choose_route(4096, 384, 384, True, plan)
    assert big in ("merged", "dense")  # many tokens: one matmul with W0 + ΔW


@settings(max_examples=60, deadline=None)
@given(tokens=st.integers(1, 6000), rows=st.integers(1, 700), cols=st.integers(1, 700), budget=st.sampled_from([64, 5000, 1 << 16]))
def test_token_chunks_cover_the_tokens_in_equal_chunks_within_the_budget(tokens, rows, cols, budget):
    from spectral_peft.fastpath.plan import BUDGET_SLACK, AdapterPlan

    plan = AdapterPlan(separable(operators.cosine(rows), operators.cosine(cols), torch.tensor([0])), 1, "cpu", torch.float64)
    width = max(plan.core_rows, plan.core_cols, rows, cols)
    chunks = list(plan.token_chunks(tokens, budget))
    assert chunks[0].start == 0 and chunks[-1].stop == tokens
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    sizes = [c.stop - c.start for c in chunks]
    assert len(set(sizes[:-1])) <= 1 and 0 < sizes[-1] <= sizes[0]
    allowed = BUDGET_SLACK * budget
    assert sizes[0] <= max(32, math.ceil(allowed / width)), "a chunk over the budget (beyond the 32-token floor)"
    if sizes[0] > 32:  # no more chunks than the budget needs, and no short tail
        needed = math.ceil(tokens * width / allowed)
        assert len(chunks) <= needed and sizes[0] - sizes[-1] < needed


@pytest.mark.parametrize("name", ["wavelet", "wht"])
def test_the_cost_model_prices_the_operators_route_of_the_plans_dtype(name, monkeypatch):
    """A float32 CPU plan is priced with the compiled kernels, a float64 plan with torch's route."""
    from spectral_peft.fastpath.plan import route_costs
    from spectral_peft.native import library

    monkeypatch.setattr(library, "available", lambda: True)  # what is priced, not what is built
    plans = {dt: _make(get_basis(name), (256, 256), 100, seed=0, dtype=dt).plan() for dt in (torch.float32, torch.float64)}
    assert plans[torch.float32].right.cost(512, native=True) != plans[torch.float32].right.cost(512, native=False)
    costs = {dt: route_costs(512, 256, 256, True, plan) for dt, plan in plans.items()}
    assert costs[torch.float32]["sparse"] != costs[torch.float64]["sparse"]


def test_the_compiled_spread_and_sampled_product_make_the_sparse_route_cheaper(monkeypatch):
    """The same float32 plan priced with and without the compiled kernels: the sparse route's
    spreads and sampled product (torch: gathers of tokens × entries) cost far less with them."""
    from spectral_peft.fastpath.plan import route_costs
    from spectral_peft.native import library

    plan = _make(get_basis("dht"), (384, 384), 1000, seed=0, dtype=torch.float32).plan()
    priced = {}
    for kernels in (True, False):
        monkeypatch.setattr(library, "available", lambda kernels=kernels: kernels)
        priced[kernels] = route_costs(512, 384, 384, True, plan)
    assert priced[True]["sparse"] < 0.5 * priced[False]["sparse"]
    assert priced[True]["merged"] < priced[False]["merged"]


def test_unknown_and_impossible_routes():
    adapter = _make(get_basis("dct"), (6, 8), 5, seed=0)
    x = randn(2, 8, seed=1)
    adapter.route = "fastest"
    with pytest.raises(ValueError, match="unknown route"):
        adapter(x)
    adapter.route = "sparse"
    with pytest.raises(TypeError, match="dtype"):
        adapter(x.float())
    with pytest.raises(ValueError, match="unknown route"):
        set_route(nn.Sequential(adapter), "nope")


class _NoFastPath(SpectralBasis):
    """A basis with no factorization: B = 2·I (linear, not orthonormal)."""

    orthonormal = False

    def _forward(self, weight):
        return 2.0 * weight

    def _inverse(self, coefficients):
        return 2.0 * coefficients


def test_basis_without_factorization_falls_back_to_dense():
    register_basis("test_no_fast_path")(_NoFastPath)
    try:
        basis = get_basis("test_no_fast_path")
        adapter = _make(basis, (5, 7), 6, seed=0)
        assert adapter.plan() is None
        x, g = randn(3, 7, seed=1), randn(3, 5, seed=2)
        adapter.route = "auto"
        _assert_same(_run(adapter, x, g), _reference(adapter, x, g), what="auto")
        assert adapter.last_route == "dense"
        adapter.route = "merged"
        with pytest.raises(ValueError, match="factorization"):
            adapter(x)
    finally:
        unregister_basis("test_no_fast_path")


def test_every_builtin_basis_and_its_subclasses_and_a_user_basis_have_a_fast_route():
    """Every registered basis declares a factorization; subclasses inherit it (no exact-class lookup)."""
    for name in BASES:
        for basis in (get_basis(name), _builtin_subclass(name)()):
            adapter = _make(basis, (8, 16), 10, seed=0)
            assert adapter.plan() is not None, f"{basis!r} takes the dense route"
    assert _make(HartleyRowsCosineColumns(), (6, 9), 8, seed=0).plan() is not None


@pytest.mark.parametrize("name", BASES)
def test_subclass_of_a_registered_basis_inherits_every_route(name):
    subclass = _builtin_subclass(name)
    shape = next(s for s in [(8, 12), (12, 8), (8, 8), (6, 10)] if _supports(get_basis(name), s))
    adapter = _make(subclass(), shape, 11, seed=5)
    x, g = randn(2, 3, shape[1], seed=6), randn(2, 3, shape[0], seed=7)
    expected = _reference(adapter, x, g)
    for route in _routes(adapter) + ["auto"]:
        _assert_same(_run(adapter, x, g, route), expected, what=f"{subclass.__name__} {route}")
    assert "sparse" in _routes(adapter)


def test_user_basis_takes_the_sparse_route_under_auto():
    """A basis from this file (transforms + a factorization of public operators) trains on a fast route."""
    register_basis("test_hartley_cosine")(HartleyRowsCosineColumns)
    try:
        adapter = _make(get_basis("test_hartley_cosine"), (6, 9), 8, seed=0)
        x, g = randn(4, 9, seed=1), randn(4, 6, seed=2)
        adapter.route = "auto"
        _assert_same(_run(adapter, x, g), _reference(adapter, x, g), what="auto")
        assert adapter.last_route in ("sparse", "compact", "merged")
    finally:
        unregister_basis("test_hartley_cosine")


def test_the_sparse_route_keeps_the_few_columns_it_reads_for_the_gradient(basis, monkeypatch):
    """Few coefficients on a wide layer: the forward keeps x̂[:, distinct p] and the backward takes
    the coefficient gradient from it, without transforming x again; values and gradients as the definition."""
    import spectral_peft.fastpath.core as core

    shape = next(s for s in [(16, 64), (64, 16), (32, 64), (64, 64)] if _supports(basis, s))
    adapter = _make(basis, shape, 4, seed=31)
    plan = adapter.plan()
    if plan is None:
        return  # no factorization, no sparse route (test_routes_* cover the dense one)
    assert plan.core.keeps_columns
    assert torch.equal(plan.core.kept_columns[plan.core.kept_p], plan.core.p)
    monkeypatch.setattr(core, "TOKEN_CHUNK_ELEMENTS", 64)  # several chunks of the kept array
    transformed = []
    apply = type(plan.right).apply
    monkeypatch.setattr(type(plan.right), "apply", lambda op, x: transformed.append(x.shape) or apply(op, x))
    x, g = randn(3, 37, shape[1], seed=32), randn(3, 37, shape[0], seed=33)
    expected = _reference(adapter, x, g)
    transformed.clear()
    _assert_same(_run(adapter, x, g, "sparse"), expected, what="sparse, kept columns")
    if shape[0] != shape[1]:  # rows of x (not of g, which left.adjoint may send through the same class)
        x_rows = sum(rows for rows, width in transformed if width == shape[1])
        assert x_rows == 111, "x is transformed once (forward), not again for the gradient"


def test_the_compact_program_is_the_factorization_restricted_to_the_functions_it_touches(basis):
    """L_used · K'(c) · R_kept, read back densely from the compact program's operators, is ΔW/α as
    ``delta_weight()`` defines it (through the basis's own inverse), and R_kept / L_used have only
    the columns and rows of the distinct p and q of the entries."""
    shape = next(s for s in [(16, 24), (24, 16), (16, 16), (12, 20), (16, 32)] if _supports(basis, s))
    adapter = _make(basis, shape, 13, seed=41)
    plan = adapter.plan()
    if plan is None:
        return  # no factorization, no compact route
    program = plan.compact()
    core = program.core
    kept, used = plan.core.kept_columns.numel(), torch.unique(plan.core.q).numel()
    assert (program.right.size_out, program.right.size_in) == (kept, shape[1])
    assert (program.left.size_out, program.left.size_in) == (shape[0], used)
    assert (core.cols, core.rows) == (kept, used) and not core.keeps_columns
    r_kept = program.right.adjoint(torch.eye(kept, dtype=torch.float64))  # kept × N
    l_used = program.left.apply(torch.eye(used, dtype=torch.float64)).T  # M × used
    reduced = torch.zeros(used, kept, dtype=torch.float64)
    reduced.index_put_((core.q, core.p), core.scale(adapter.coefficients.detach(), 1.0), accumulate=True)
    torch.testing.assert_close(l_used @ reduced @ r_kept, adapter.delta_weight().detach() / adapter.alpha,
                               rtol=1e-10, atol=1e-12)


def test_the_compact_program_stops_reading_functions_past_its_limit(basis):
    """``compact(limit)`` is None exactly when R_kept and L_used have more than ``limit`` nonzeros."""
    shape = next(s for s in [(16, 24), (24, 16), (16, 16), (12, 20), (16, 32)] if _supports(basis, s))
    if _make(basis, shape, 13, seed=43).plan() is None:
        return
    nnz = _make(basis, shape, 13, seed=43).plan().compact().nnz
    assert nnz > 0
    assert _make(basis, shape, 13, seed=43).plan().compact(limit=nnz - 1) is None
    assert _make(basis, shape, 13, seed=43).plan().compact(limit=nnz).nnz == nnz


@pytest.mark.parametrize("route", ["merged", "sparse", "compact"])
def test_routes_over_many_token_chunks(basis, route, monkeypatch):
    """The routes process tokens in chunks; force many small chunks and compare again."""
    import spectral_peft.fastpath.core as core

    monkeypatch.setattr(core, "TOKEN_CHUNK_ELEMENTS", 64)
    monkeypatch.setattr(core, "GRADIENT_CHUNK_ELEMENTS", 64)
    monkeypatch.setattr(core, "CHUNK_ELEMENTS", 64)
    shape = next(s for s in [(8, 12), (12, 8), (8, 8), (6, 10), (8, 16)] if _supports(basis, s))
    adapter = _make(basis, shape, 11, seed=21)
    x, g = randn(5, 23, shape[1], seed=22), randn(5, 23, shape[0], seed=23)  # 115 tokens, 32-row chunks
    if adapter.plan() is None:
        # no factorization: the chunked routes do not exist, and "auto" takes the dense route
        with pytest.raises(ValueError, match="needs a factorization"):
            _run(adapter, x, g, route)
        route = "auto"
    _assert_same(_run(adapter, x, g, route), _reference(adapter, x, g), what=route)


def _query_key_value(basis: str, n: int, widths: tuple[int, int, int]) -> nn.Module:
    """Three adapters reading one 16-wide input (out widths ``widths``), float64, random coefficients."""
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(16, width) for width in widths)

        def forward(self, x):
            return (self.query(x) * self.key(x)).sum(-1) + self.value(x).sum(-1)

    block = Block().double()
    inject(block, SpectralConfig(basis=basis, n=n, selector="random", target_modules=["query", "key", "value"]))
    for m in block.modules():
        if isinstance(m, SpectralAdapter):
            with torch.no_grad():
                m.coefficients.normal_()
    return block


def test_adapters_sharing_one_input():
    """query/key/value-like adapters read the same input tensor; gradients still add up exactly."""
    block = _query_key_value("dft", 25, (16, 16, 8))
    x = randn(3, 7, 16, seed=1)
    grads = {}
    for route in ("reference", "merged", "sparse", "dense"):
        set_route(block, route)
        xx = x.clone().requires_grad_(True)
        block.zero_grad()
        block(xx).sum().backward()
        grads[route] = [xx.grad] + [m.coefficients.grad.clone() for m in block.modules() if isinstance(m, SpectralAdapter)]
    for route in ("merged", "sparse", "dense"):
        for a, e in zip(grads[route], grads["reference"]):
            torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


class _CountingOp:
    """An operator stand-in that counts its transforms (x̂ = 2x, one block)."""

    def __init__(self):
        self.calls = 0

    def apply_blocks(self, x):
        self.calls += 1
        return [2 * x]


def test_shared_transforms_compute_once_for_all_readers_and_free_after_the_last():
    from spectral_peft.fastpath.shared import SharedTransforms

    shared, op, x = SharedTransforms(), _CountingOp(), torch.randn(6, 4)
    for _ in range(3):
        shared.read(x)
    chunk = slice(0, 6)
    results = []
    for _ in range(3):
        results.append(shared.apply_blocks(x, op, chunk, x[chunk])[0])
        shared.done(x)
    assert op.calls == 1 and all(torch.equal(r, 2 * x) for r in results)
    assert len(shared) == 0  # the last reader freed the entry


def test_shared_transforms_keep_nothing_for_one_reader_and_recompute_after_an_in_place_change():
    from spectral_peft.fastpath.shared import SharedTransforms

    shared, op, x = SharedTransforms(), _CountingOp(), torch.randn(6, 4)
    shared.read(x)
    shared.apply_blocks(x, op, slice(0, 6), x)
    assert not shared._inputs[x].transforms  # one reader: nothing kept
    shared.done(x)
    assert len(shared) == 0
    shared.read(x), shared.read(x)
    first = shared.apply_blocks(x, op, slice(0, 6), x)[0].clone()
    x.mul_(3)  # a new version: the kept transform is stale
    second = shared.apply_blocks(x, op, slice(0, 6), x)[0]
    assert op.calls == 3 and torch.equal(second, 3 * first)
    other = torch.randn(6, 4)  # never read by a forward pass: computed, not kept
    shared.apply_blocks(other, op, slice(0, 6), other)
    shared.done(other)
    assert op.calls == 4 and len(shared) == 1


def test_shared_transforms_go_with_their_input():
    import gc

    from spectral_peft.fastpath.shared import SharedTransforms

    shared, op = SharedTransforms(), _CountingOp()
    x = torch.randn(6, 4)
    shared.read(x), shared.read(x)
    shared.apply_blocks(x, op, slice(0, 6), x)  # a backward that never finishes
    del x
    gc.collect()
    assert len(shared) == 0


@pytest.mark.parametrize("basis", BASES)
def test_query_key_value_on_the_merged_route_transform_their_input_once(monkeypatch, basis):
    """Three adapters reading one input: right(x) runs once for their coefficient gradients (their
    right operators are one shared instance), and every gradient equals the reference route's."""
    from spectral_peft.fastpath.shared import SHARED

    block = _query_key_value(basis, 20, (8, 8, 8))
    x = randn(5, 16, seed=3)
    grads = {}
    transformed = []
    for route in ("reference", "merged"):
        set_route(block, route)
        right = next(m for m in block.modules() if isinstance(m, SpectralAdapter)).plan().right
        apply_blocks = type(right).apply_blocks
        monkeypatch.setattr(type(right), "apply_blocks",
                            lambda op, t: transformed.append(t.shape) or apply_blocks(op, t))
        transformed.clear()
        block.zero_grad()
        block(x).sum().backward()
        grads[route] = [m.coefficients.grad.clone() for m in block.modules() if isinstance(m, SpectralAdapter)]
        monkeypatch.undo()
    x_transforms = [shape for shape in transformed if shape[-1] == 16]  # (the output gradients are 8 wide)
    assert x_transforms == [(5, 16)], "x transformed once for three adapters"
    assert len(SHARED) == 0
    for a, e in zip(grads["merged"], grads["reference"]):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


def test_worked_example_in_the_spectral_basis_docstring_runs_and_is_fast():
    """The contract's worked example (SpectralBasis docstring) registers a basis with a fast route."""
    import textwrap

    doc = SpectralBasis.__doc__
    block = doc[doc.index("complete with its fast route::") :].split("::", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line.strip() and not line.startswith("        "):
            break
        lines.append(line)
    namespace: dict = {}
    exec(textwrap.dedent("\n".join(lines)), namespace)  # registers "dct_rows"
    try:
        basis = get_basis("dct_rows")
        import scipy.fft

        w = randn(6, 5, seed=3)
        expected = torch.from_numpy(scipy.fft.dct(w.numpy(), axis=0, norm="ortho"))
        torch.testing.assert_close(basis.forward(w), expected)
        adapter = _make(basis, (6, 5), 7, seed=1)
        assert adapter.plan() is not None
        x, g = randn(3, 5, seed=4), randn(3, 6, seed=5)
        for route in _routes(adapter):
            _assert_same(_run(adapter, x, g, route), _reference(adapter, x, g), what=route)
    finally:
        unregister_basis("dct_rows")


# ------------------------------------------------------------------------------------------------
# Mixed precision: autocast and half-precision models, float32 coefficients, on every route
# ------------------------------------------------------------------------------------------------
HALF_TOL = {torch.bfloat16: 3e-2, torch.float16: 4e-3}


@pytest.mark.parametrize("mode", ["autocast", "cast model"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_routes_in_half_precision_keep_float32_coefficients(basis, dtype, mode):
    """Every route under ``torch.autocast`` and after ``adapter.to(half)``: y in the half dtype,
    ∂L/∂c in float32, values and gradients equal to the float64 definition to half precision."""
    import copy

    shape = next(s for s in [(8, 12), (12, 8), (8, 8), (6, 10), (8, 16)] if _supports(basis, s))
    adapter = _make(basis, shape, 11, seed=31, dtype=torch.float32)
    x, g = randn(2, 3, shape[1], seed=32, dtype=torch.float32), randn(2, 3, shape[0], seed=33)
    if mode == "cast model":
        adapter.to(dtype)
        x = x.to(dtype)
        assert adapter.coefficients.dtype == torch.float32 and adapter.base_layer.weight.dtype == dtype
    oracle = copy.deepcopy(adapter).double()  # the same (rounded) weights, float64 arithmetic
    expected = _reference(oracle, x.double(), g)
    for route in _routes(adapter) + ["reference", "auto"]:
        adapter.route = route
        adapter.coefficients.grad = None
        xx = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=dtype, enabled=mode == "autocast"):
            y = adapter(xx)
        (y.double() * g).sum().backward()
        assert y.dtype == dtype, route
        assert xx.grad.dtype == x.dtype and adapter.coefficients.grad.dtype == torch.float32, route
        actual = (y.double(), xx.grad.double(), adapter.coefficients.grad.double(), None, None)
        _assert_same(actual, expected, tol=HALF_TOL[dtype], what=f"{mode} {dtype} route={route}")
        if route in ("merged", "sparse", "compact"):
            assert adapter.last_route == route  # the fast route itself ran, no fallback


def test_casting_the_model_to_half_keeps_the_coefficients_exact_in_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 8))
    inject(model, SpectralConfig(basis="dct", n=30, selector="random", target_modules=["0", "2"]))
    adapter = model[0]
    with torch.no_grad():
        adapter.coefficients.normal_()
    values = adapter.coefficients.detach().clone()
    model.to(torch.bfloat16)
    assert adapter.coefficients.dtype == torch.float32 and torch.equal(adapter.coefficients.detach(), values)
    assert adapter.plan().dtype == torch.float32
    model.half()
    assert adapter.coefficients.dtype == torch.float32 and torch.equal(adapter.coefficients.detach(), values)
    model.double()  # float64 is followed
    assert adapter.coefficients.dtype == torch.float64 and adapter.plan().dtype == torch.float64


# ------------------------------------------------------------------------------------------------
# torch.compile
# ------------------------------------------------------------------------------------------------
def _compiled_case(name):
    from tests.adapter_cases import TinyNet, make_config, randomize_coefficients

    model = inject(TinyNet(), make_config(name, "random"))
    randomize_coefficients(model)
    return model


def _forward_backward(model, x):
    model.zero_grad()
    y = model(x)
    y.pow(2).sum().backward()
    return y.detach(), [a.coefficients.grad.clone() for a in model.modules() if isinstance(a, SpectralAdapter)]


@pytest.mark.parametrize("name", [*BASES, "patchwise:dht:2:3"])  # + a hierarchy: stacked levels
def test_compile_has_no_graph_breaks_and_matches_eager(name):
    """``torch._dynamo.explain`` of an injected model: one graph, no break, in training, in inference
    and under autocast; the compiled model (dynamo + AOTAutograd, forward and backward) equals eager."""
    import copy

    import torch._dynamo
    from tests.adapter_cases import tiny_input

    torch._dynamo.reset()
    model = _compiled_case(name)
    x = tiny_input()
    for context in (torch.enable_grad(), torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16)):
        with context:
            explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, backend="aot_eager")
    for _ in range(2):  # the second call runs the cached graph
        y, grads = _forward_backward(compiled, x)
        y_eager, grads_eager = _forward_backward(eager, x)
        torch.testing.assert_close(y, y_eager, rtol=1e-5, atol=1e-5)
        for a, e in zip(grads, grads_eager):
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * max(1.0, e.abs().max().item()))


def test_compile_with_inductor_matches_eager():
    """The default ``torch.compile`` (inductor) on one basis: forward and backward equal eager."""
    import copy

    import torch._dynamo
    from tests.adapter_cases import tiny_input

    torch._dynamo.reset()
    model = _compiled_case("dht")
    eager = copy.deepcopy(model)
    x = tiny_input()
    y, grads = _forward_backward(torch.compile(model), x)
    y_eager, grads_eager = _forward_backward(eager, x)
    torch.testing.assert_close(y, y_eager, rtol=1e-5, atol=1e-5)
    for a, e in zip(grads, grads_eager):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * max(1.0, e.abs().max().item()))
