"""SpectralAdapter on every basis × selector: exact zero init, training, merge/unmerge, dtypes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.adapter_cases import BASIS_SELECTOR, TinyNet, adapt, make_config, randomize_coefficients, tiny_input
from spectral_peft import SpectralAdapter, adapters, get_basis, inject, list_bases, operators, trainable_parameters


@pytest.mark.parametrize("basis, selector", BASIS_SELECTOR)
def test_zero_init_gives_identical_outputs(basis, selector):
    base = TinyNet()
    expected = base(tiny_input())
    model = adapt(TinyNet(), make_config(basis, selector))
    assert torch.equal(model(tiny_input()), expected)


@pytest.mark.parametrize("basis, selector", BASIS_SELECTOR)
def test_one_optimizer_step_changes_only_the_coefficients(basis, selector):
    model = adapt(TinyNet(), make_config(basis, selector))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(tiny_input()).pow(2).mean().backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"up.coefficients", "down.coefficients"}
    assert trainable_parameters(model) == 2 * 20


@pytest.mark.parametrize("basis, selector", BASIS_SELECTOR)
def test_trainable_parameter_count_is_n_per_layer(basis, selector):
    model = adapt(TinyNet(), make_config(basis, selector, n=37))
    assert trainable_parameters(model) == 2 * 37
    assert [name for name, p in model.named_parameters() if p.requires_grad] == [
        "up.coefficients",
        "down.coefficients",
    ]


@pytest.mark.parametrize("basis", list_bases())
def test_delta_weight_is_alpha_times_inverse_of_the_scattered_coefficients(basis):
    model = inject(TinyNet(), make_config(basis, "random", alpha=3.0))
    randomize_coefficients(model)
    adapter = model.up
    dense = torch.zeros(adapter.out_features * adapter.in_features)
    dense[adapter.positions] = adapter.coefficients.detach()
    expected = 3.0 * get_basis(basis).inverse(dense.view(adapter.out_features, adapter.in_features))
    torch.testing.assert_close(adapter.delta_weight().detach(), expected)
    x = tiny_input(seed=9)[..., :] @ torch.eye(16)
    torch.testing.assert_close(
        adapter(x), x @ (adapter.base_layer.weight + expected).T + adapter.base_layer.bias, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("basis", list_bases())
def test_merge_then_unmerge_restores_the_weight_and_keeps_outputs(basis):
    model = inject(TinyNet(), make_config(basis, "energy"))
    randomize_coefficients(model)
    x = tiny_input()
    adapted = model(x)
    w0 = model.up.base_layer.weight.clone()
    for a in adapters(model).values():
        a.merge()
    torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="already merged"):
        model.up.merge()
    for a in adapters(model).values():
        a.unmerge()
    torch.testing.assert_close(model.up.base_layer.weight, w0, atol=1e-6, rtol=0)
    torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)  # W0 is restored up to float32 rounding


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("basis", list_bases())
def test_low_and_double_precision_base_weights(basis, dtype):
    base = TinyNet(dtype=dtype)
    x = tiny_input(dtype=dtype)
    expected = base(x)
    model = inject(TinyNet(dtype=dtype), make_config(basis, "mixed"))
    assert model.up.coefficients.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert torch.equal(model(x), expected)
    randomize_coefficients(model, scale=0.05)
    out = model(x)
    assert out.dtype == dtype and torch.isfinite(out).all()
    reference = model.up.base_layer.weight.double() + model.up.delta_weight().double()
    model.up.merge()
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(model.up.base_layer.weight.double(), reference, atol=tol, rtol=tol)


def test_eval_forward_reuses_delta_until_the_coefficients_change():
    model = inject(TinyNet(), make_config("dht", "energy")).eval()
    calls = []
    original = SpectralAdapter.delta_weight

    def counting(self):
        calls.append(1)
        return original(self)

    x = tiny_input()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SpectralAdapter, "delta_weight", counting)
        with torch.no_grad():
            first = model(x)
            model(x)
            assert len(calls) == 2  # one per adapter, then cached
            randomize_coefficients(model)
            changed = model(x)
            assert len(calls) == 4
    assert not torch.equal(first, changed)


def test_adapter_rejects_bad_positions():
    layer = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"flat indices in \[0, 12\)"):
        SpectralAdapter(layer, get_basis("dct"), torch.tensor([0, 12]))
    with pytest.raises(ValueError, match="duplicates"):
        SpectralAdapter(layer, get_basis("dct"), torch.tensor([1, 1]))


def test_adapter_rejects_non_linear_layers():
    with pytest.raises(TypeError, match="nn.Linear or transformers Conv1D"):
        SpectralAdapter(nn.Conv2d(2, 2, 1), get_basis("dct"), torch.tensor([0]))


def test_transformers_conv1d_weight_is_stored_transposed():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    layer = Conv1D(nf=8, nx=6)  # y = x W + b with W of shape (6, 8)
    model = nn.Sequential(layer)
    x = torch.randn(4, 6)
    expected = model(x)
    inject(model, make_config("dct", "energy", n=10, target_modules=["0"]))
    adapter = model[0]
    assert (adapter.out_features, adapter.in_features) == (8, 6)
    assert torch.equal(model(x), expected)
    randomize_coefficients(model)
    adapted = model(x)
    torch.testing.assert_close(adapted, x @ (layer.weight + adapter.delta_weight().detach().T) + layer.bias)
    adapter.merge()
    torch.testing.assert_close(layer(x), adapted, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("basis", list_bases())
def test_hf_trainer_bf16_trains_a_tiny_model(basis, tmp_path):
    """``TrainingArguments(bf16=True)`` with a Hugging Face Trainer: the adapters run under autocast
    (their outputs are bfloat16), the loss stays finite and the float32 coefficients train.

    (fp16 on a CPU: transformers trains in float32 without autocast, so fp16 is covered by
    ``torch.autocast(dtype=float16)`` and ``model.half()`` in test_fastpath.py and below.)"""
    transformers = pytest.importorskip("transformers")
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=3)
    model = BertForSequenceClassification(config)
    inject(model, make_config(basis, "random", target_modules=["query", "value", "intermediate.dense"], n=20))
    gen = torch.Generator().manual_seed(1)
    data = [
        {"input_ids": torch.randint(0, 60, (8,), generator=gen), "labels": int(torch.randint(0, 3, (), generator=gen))}
        for _ in range(16)
    ]
    seen = []
    adapter = next(iter(adapters(model).values()))
    adapter.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    before = {name: a.coefficients.detach().clone() for name, a in adapters(model).items()}
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-2,
        use_cpu=True, report_to=[], save_strategy="no", logging_steps=1, seed=0, bf16=True,
        disable_tqdm=True,
    )
    result = Trainer(model=model, args=args, train_dataset=data).train()
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert torch.isfinite(torch.tensor(result.training_loss))
    for name, a in adapters(model).items():
        assert a.coefficients.dtype == torch.float32
        assert not torch.equal(a.coefficients.detach(), before[name]), name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("basis", list_bases())
def test_model_cast_to_half_after_inject_trains_on_every_route(basis, dtype):
    """``model.to(half)`` after ``inject``: a few AdamW steps on every route, float32 coefficients."""
    from spectral_peft import set_route

    for route in ("auto", "reference", "dense", "merged", "sparse", "traced"):
        model = inject(TinyNet(), make_config(basis, "random"))
        if route in ("merged", "sparse", "traced") and model.up.plan() is None:
            continue
        model.to(dtype)
        set_route(model, route)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        x = tiny_input(dtype=dtype)
        with torch.no_grad():
            target = TinyNet(seed=9)(tiny_input()).to(dtype)
        losses = []
        for _ in range(2):
            optimizer.zero_grad()
            loss = (model(x) - target).float().pow(2).mean()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert model.up.coefficients.dtype == torch.float32 and model.up.coefficients.grad.dtype == torch.float32
        assert all(map(math.isfinite, losses)) and losses[-1] < losses[0], (route, losses)


def _adapter_tensors(model):
    for adapter in adapters(model).values():
        yield adapter.coefficients
        yield adapter.positions


@pytest.mark.parametrize("basis", list_bases())
def test_injected_under_inference_mode_trains_like_injected_outside(basis):
    """inject() inside ``torch.inference_mode`` (e.g. in a script that loads and evaluates first)
    gives an adapter of normal tensors: it trains, step for step, as one injected outside."""
    config = make_config(basis, "energy")
    outside, inside = inject(TinyNet(), config), TinyNet()
    with torch.inference_mode():
        inject(inside, config)
    assert not any(t.is_inference() for t in _adapter_tensors(inside))
    x = tiny_input()
    models = (outside, inside)
    for model in models:
        randomize_coefficients(model)
    optimizers = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=0.1) for m in models]
    for _ in range(2):
        losses = []
        for model, optimizer in zip(models, optimizers):
            optimizer.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-7)
    for a, b in zip(_adapter_tensors(outside), _adapter_tensors(inside)):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


def test_a_model_with_inference_tensor_weights_evaluates_its_current_coefficients():
    """Weights made under ``torch.inference_mode`` keep no version counter: the adapter's caches
    of W0 + ΔW then recompute instead of failing, and always use the current coefficients."""
    with torch.inference_mode():
        frozen = TinyNet()
    assert frozen.up.weight.is_inference()
    config = make_config("dct", "energy")
    model, reference = inject(frozen, config).eval(), inject(TinyNet(), config).eval()
    x = tiny_input()
    for seed in (0, 1):
        randomize_coefficients(model, seed=seed)
        randomize_coefficients(reference, seed=seed)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x))
            torch.testing.assert_close(model(x), reference(x))  # a second call (a cache would be reused)


def test_route_constants_built_under_inference_mode_are_normal_tensors():
    """An operator's constants are built on first use and kept; if that use is under
    ``torch.inference_mode`` (evaluation first), they must still serve later training steps.
    Every registered basis's fast-route operators, their constants built afresh."""
    ops = []
    for basis in list_bases():
        adapter = next(iter(adapters(inject(TinyNet(), make_config(basis, "energy"))).values()))
        factorization = adapter.basis.factorization(adapter.out_features, adapter.in_features, adapter.positions)
        ops += [factorization.left, factorization.right]
    built = []
    original = operators._Constants._consts

    def recording(self, device, dtype):
        self._const_cache = None  # built afresh here, whatever earlier tests built
        constants = original(self, device, dtype)
        built.extend(t for t in constants if isinstance(t, torch.Tensor))
        return constants

    with pytest.MonkeyPatch.context() as mp, torch.inference_mode():
        mp.setattr(operators._Constants, "_consts", recording)
        for op in ops:
            op.prepare(torch.device("cpu"), torch.float32)
    assert len(built) > 10 and not any(t.is_inference() for t in built)
