"""A tiny Hugging Face classifier built from a config: trainable head, save_pretrained round trip,
Trainer (train, checkpoint, resume) and accelerate, with exactly the lines the README shows."""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file

from spectral_peft import SpectralConfig, adapters, inject, load_adapters, merge_and_unload, save_adapters

VOCAB, LABELS = 64, 3


def tiny_classifier(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=LABELS,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config).eval()


CONFIG = SpectralConfig(basis="dct", selector="mixed", delta=0.7, n=40, alpha=4.0, target_modules=["query", "value"],
                        modules_to_save=["classifier"])


def _batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, VOCAB, (8, 10), generator=gen),
            "labels": torch.randint(0, LABELS, (8,), generator=gen)}


def _trained():
    model = inject(tiny_classifier(), CONFIG).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for step in range(3):
        optimizer.zero_grad()
        model(**_batch(step)).loss.backward()
        optimizer.step()
    return model.eval()


def test_save_pretrained_of_an_adapted_model_loads_back_with_from_pretrained(tmp_path):
    model = _trained()
    x = _batch(9)["input_ids"]
    with torch.no_grad():
        expected = model(input_ids=x).logits
    assert not torch.allclose(expected, tiny_classifier()(input_ids=x).logits)  # the head and adapters trained
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    query = "bert.encoder.layer.0.attention.self.query"
    torch.testing.assert_close(saved[f"{query}.weight"], (model.get_submodule(query).base_weight()
                                                          + model.get_submodule(query).delta_weight()).detach())
    plain = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert not adapters(plain)
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=x).logits, expected, atol=1e-5, rtol=1e-5)
    # the same checkpoint restores the adapter exactly when loaded (strictly) into an adapted model
    resumed = inject(tiny_classifier(seed=1), CONFIG)
    resumed.load_state_dict(saved, strict=True)
    with torch.no_grad():
        assert torch.equal(resumed(input_ids=x).logits, expected)


def test_save_adapters_keeps_the_trained_head_so_the_reloaded_classifier_matches(tmp_path):
    model = _trained()
    x = _batch(9)["input_ids"]
    save_adapters(model, tmp_path)
    restored = load_adapters(tiny_classifier(), tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(restored(input_ids=x).logits, model(input_ids=x).logits)


def test_after_merge_and_unload_save_pretrained_is_the_class_own_again(tmp_path):
    model = merge_and_unload(_trained())
    assert "save_pretrained" not in vars(model)
    model.save_pretrained(tmp_path)
    assert not any("base_layer" in key or "coefficients" in key for key in load_file(str(tmp_path / "model.safetensors")))


class _Rows(torch.utils.data.Dataset):
    def __init__(self, count: int = 32):
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, VOCAB, (count, 10), generator=gen)
        self.labels = torch.randint(0, LABELS, (count,), generator=gen)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def test_trainer_trains_checkpoints_and_resumes_an_adapted_model(tmp_path):
    model = inject(tiny_classifier(), CONFIG)
    head_before = model.classifier.weight.clone()
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=4, save_steps=2, per_device_train_batch_size=8,
                                          learning_rate=0.05, report_to=[], use_cpu=True, seed=0, logging_steps=100)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Rows())
    trainer.train()
    assert not torch.equal(model.classifier.weight, head_before)
    assert all(a.coefficients.abs().sum() > 0 for a in adapters(model).values())
    x = _Rows().ids[:4]
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=x).logits
    final = tmp_path / "checkpoint-4"
    plain = transformers.BertForSequenceClassification.from_pretrained(final).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=x).logits, expected, atol=1e-5, rtol=1e-5)
    # resuming from the middle checkpoint reaches the same adapted model
    again = inject(tiny_classifier(), CONFIG)
    transformers.Trainer(model=again, args=args, train_dataset=_Rows()).train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=x).logits, expected, atol=1e-5, rtol=1e-5)


def test_accelerate_prepare_train_and_save_adapters(tmp_path):
    from accelerate import Accelerator

    model = inject(tiny_classifier(), CONFIG)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    for step in range(2):
        accelerator.backward(model(**_batch(step)).loss)
        optimizer.step()
        optimizer.zero_grad()
    save_adapters(accelerator.unwrap_model(model), tmp_path)
    restored = load_adapters(tiny_classifier(), tmp_path).eval()
    model.eval()
    x = _batch(9)["input_ids"]
    with torch.no_grad():
        assert torch.equal(restored(input_ids=x).logits, model(input_ids=x).logits)


def test_targeting_an_lm_head_tied_to_the_embeddings_is_refused():
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = transformers.LlamaForCausalLM(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with pytest.raises(ValueError, match=r"layer 'lm_head' shares its weight tensor with 'model.embed_tokens.weight' "
                                         r"\(tied weights\).*tie_word_embeddings=False"):
        inject(model, SpectralConfig(basis="dct", selector="random", n=8, target_modules=["lm_head"]))


def test_save_pretrained_round_trips_a_gpt2_conv1d_model(tmp_path):
    # transformers' Conv1D stores W as in × out: the merged copy must be written transposed
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    model = inject(transformers.GPT2LMHeadModel(config).eval(),
                   SpectralConfig(basis="dht", selector="random", n=30, alpha=3.0, target_modules=["c_attn", "c_proj"]))
    assert all(adapter.fan_in_fan_out for adapter in adapters(model).values())
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for adapter in adapters(model).values():
            adapter.coefficients.copy_(torch.randn(adapter.n, generator=gen))
        x = _batch()["input_ids"]
        expected = model(input_ids=x).logits
    model.save_pretrained(tmp_path)
    plain = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=x).logits, expected, atol=1e-4, rtol=1e-4)
