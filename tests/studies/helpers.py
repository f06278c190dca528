"""Helpers shared by the study tests."""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from spectral_peft.studies.catalog import studies as _catalog  # noqa: E402

STUDIES = tuple(_catalog())


def load_study(name: str):
    """Import studies/<name>.py as a module and return its STUDY."""
    spec = importlib.util.spec_from_file_location(f"_study_{name}", REPO / "studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDY


def run(study, out, *extra):
    """Run a study in-process on the smoke preset (extra CLI options appended)."""
    from spectral_peft.studies import run_study

    return run_study(study, ["--preset", "smoke", "--out", str(out), "--quiet", *extra])


def save_tiny_model(folder, arch: str, texts, label_names):
    """A tiny random ``arch`` (roberta, llama, gpt2) built from a config, saved with a word-level
    tokenizer over ``texts`` to ``folder``; returns the folder (a string)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import (AutoModel, AutoModelForCausalLM, GPT2Config, LlamaConfig, PreTrainedTokenizerFast,
                              RobertaConfig)

    specials = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    words = sorted({w for t in [*texts, *label_names, "text: label:"] for w in t.lower().split()}
                   | {"text", "label", ":"})
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit() if arch == "roberta" else pre_tokenizers.Whitespace()
    pad = None if arch == "gpt2" else "[PAD]"  # GPT-2 has no padding token: the harness pads with EOS
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", bos_token="[BOS]",
                                        eos_token="[EOS]", pad_token=pad)
    size = dict(vocab_size=len(vocab), bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    if arch == "roberta":
        model = AutoModel.from_config(RobertaConfig(
            **size, pad_token_id=0, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=80, type_vocab_size=1))
    elif arch == "llama":  # 4 query heads, 2 key/value heads: k_proj and v_proj are 16 x 32
        model = AutoModelForCausalLM.from_config(LlamaConfig(
            **size, pad_token_id=0, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False))
    elif arch == "gpt2":  # Conv1D layers (c_attn 32 -> 96)
        model = AutoModelForCausalLM.from_config(GPT2Config(**size, n_embd=32, n_layer=2, n_head=4, n_positions=128))
    else:
        raise ValueError(arch)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
