"""Adapters on real transformers architectures built from configs (random weights, no download)."""

from __future__ import annotations

import pytest
import torch
import transformers

from spectral_peft import (
    SpectralConfig, adapters, inject, list_bases, load_adapters, merge_and_unload, save_adapters,
    trainable_parameters,
)


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertModel(config).eval()


def tiny_llama():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(config).eval()


ARCHITECTURES = {
    "bert": (tiny_bert, ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
             lambda m, x: m(input_ids=x).last_hidden_state),
    "llama": (tiny_llama, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
              lambda m, x: m(input_ids=x).logits),
}


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("basis", list_bases())
def test_attention_and_mlp_layers_train_merge_save_and_reload(arch, basis, tmp_path):
    build, targets, run = ARCHITECTURES[arch]
    x = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    expected = run(build(), x)
    model = build()
    inject(model, SpectralConfig(basis=basis, selector="mixed", delta=0.7, n=16, alpha=4.0, target_modules=targets))
    found = adapters(model)
    assert len(found) == 2 * len(targets)
    assert trainable_parameters(model) == 16 * len(found)
    shapes = {(a.out_features, a.in_features) for a in found.values()}
    if arch == "llama":
        assert (32, 64) in shapes  # k_proj / v_proj with 2 of 4 heads: non-square
    assert torch.equal(run(model, x), expected)

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    target = torch.randn_like(expected)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = (run(model, x) - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        adapted = run(model, x)
        save_adapters(model, tmp_path)
        reloaded = load_adapters(build(), tmp_path)
        assert torch.equal(run(reloaded, x), adapted)
        merged = merge_and_unload(model)
        torch.testing.assert_close(run(merged, x), adapted, atol=1e-4, rtol=1e-4)
