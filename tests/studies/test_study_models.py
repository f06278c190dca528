"""Any Hugging Face model: tiny RoBERTa, Llama (non-square k/v) and GPT-2 (Conv1D) built from configs,
saved to a folder and named with --model; the generic split forward; generation scored from real tokens;
clear errors before any run starts."""
import pandas as pd
import pytest
import torch

from .helpers import load_study, run, save_tiny_model  # noqa: I001  (puts the repo root on sys.path)
from spectral_peft.studies.cache import TokenView  # noqa: E402
from spectral_peft.studies.data import make_smoke_dataset  # noqa: E402
from spectral_peft.studies.methods import build_model  # noqa: E402
from spectral_peft.studies.model import encode_generation, encode_texts, find_blocks, load_backbone  # noqa: E402
from spectral_peft.studies.train import GenerationTargets, evaluate, generate_labels  # noqa: E402

pytestmark = pytest.mark.timeout(300)

ARCHS = {  # modules to adapt, the block list the harness must find
    "roberta": (["query", "value"], "encoder.layer"),
    "llama": (["q_proj", "k_proj"], "model.layers"),
    "gpt2": (["c_attn"], "transformer.h"),
}


@pytest.fixture(scope="module")
def smoke():
    return make_smoke_dataset()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smoke):
    folder = tmp_path_factory.mktemp("models")
    return {arch: save_tiny_model(folder / arch, arch, smoke["train"].texts + smoke["test"].texts, smoke.label_names)
            for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_split_forward_matches_full_forward(arch, tiny, smoke):
    """hidden_at / forward_from at every block give the full forward's logits; decoders pool the last
    real token (each row of a right-padded batch equals that text run alone)."""
    bb = load_backbone(tiny[arch])
    assert bb.kind == ("encoder" if arch == "roberta" else "decoder")
    model, _ = build_model(bb, smoke.num_labels, {"method": "head"}, seed=0)
    assert find_blocks(bb.model)[0] == ARCHS[arch][1]
    model.eval()
    texts = smoke["test"].texts[:6]
    ids, mask = encode_texts(bb.tokenizer, texts, 32)
    assert len(set(mask.sum(1).tolist())) > 1  # the batch really is padded
    with torch.no_grad():
        full = model(ids, mask)
        for layer in range(model.num_layers + 1):
            torch.testing.assert_close(model.forward_from(model.hidden_at(ids, mask, layer), mask, layer), full,
                                       atol=1e-5, rtol=1e-5)
        for i, text in enumerate(texts):
            alone = model(*encode_texts(bb.tokenizer, [text], 32))
            torch.testing.assert_close(alone[0], full[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_classify_study_on_any_model(arch, tiny, tmp_path):
    modules, _ = ARCHS[arch]
    out = tmp_path / "out"
    assert run(load_study("ablate_delta"), out, "--model", tiny[arch], "--modules", ",".join(modules), "--values", "0.5",
               "--references", "lora", "--epochs", "2") == 0
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert list(df["method"]) == ["spectral", "lora"] and (df["status"] == "ok").all()
    assert (df["backbone"] == tiny[arch]).all() and (df["cached_layers"] == 1).all()  # blocks above 0: cached
    spectral, lora = df.iloc[0], df.iloc[1]
    assert spectral["adapted_modules"] == len(modules) and spectral["adapter_params"] == 64 * len(modules)
    shapes = {"query": 64, "value": 64, "q_proj": 64, "k_proj": 48, "c_attn": 128}  # in + out per layer
    assert lora["adapter_params"] == int(lora["lora_r"]) * sum(shapes[m] for m in modules)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_exact_match_comes_from_generated_tokens(arch, tiny, smoke):
    """evaluate() on a generate model scores greedy generation from left-padded batches; the oracle
    generates each prompt alone, token by token, with argmax over the model's own logits."""
    bb = load_backbone(tiny[arch])
    tok = bb.tokenizer
    model, counts = build_model(bb, smoke.num_labels, {"method": "head"}, seed=0, task="generate")
    assert counts["trainable_params"] == 0 and model.head is None
    model.eval()
    texts = smoke["test"].texts[:8]
    ids, mask, tokens, prompts = encode_generation(tok, texts, ["class_0"] * len(texts), max_len=32)

    def oracle(prompt):
        seq = list(prompt)
        for _ in range(3):
            with torch.no_grad():
                nxt = int(model.backbone(torch.tensor([seq])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            seq.append(nxt)
        return tok.decode(seq[len(prompt):], skip_special_tokens=True).strip()

    expected = [oracle(p) for p in prompts]
    assert any(expected)  # a random model does emit tokens
    # labels: the oracle's text for even examples (a match), another label for odd ones (a miss)
    names = sorted(set(expected) | {"never generated"})
    labels = torch.tensor([names.index(e if i % 2 == 0 else "never generated") for i, e in enumerate(expected)])
    targets = GenerationTargets(tokens=tokens, prompts=prompts, labels=labels, label_names=names,
                                pad_id=0 if arch == "llama" else tok.eos_token_id, eos_id=tok.eos_token_id,
                                max_new_tokens=3, decode=lambda t: tok.decode(t, skip_special_tokens=True))
    assert generate_labels(model, targets, batch_size=8) == expected
    metrics = evaluate(model, TokenView(ids, mask), targets)
    hits = sum(e == names[i] for e, i in zip(expected, labels.tolist()))
    assert metrics["accuracy"] == hits / len(texts) >= 0.5
    assert torch.isfinite(torch.tensor(metrics["eval_loss"]))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_generate_study_on_decoders(arch, tiny, tmp_path):
    out = tmp_path / "out"
    modules = ["q_proj", "v_proj"] if arch == "llama" else ["c_attn"]
    assert run(load_study("ablate_delta"), out, "--model", tiny[arch], "--task", "generate", "--modules", ",".join(modules),
               "--values", "0.5", "--references", "lora", "--max-steps", "6", "--eval-size", "16",
               "--dtype", "bfloat16") == 0
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert list(df["method"]) == ["spectral", "lora"] and (df["status"] == "ok").all()
    assert (df["task"] == "generate").all() and (df["dtype"] == "bfloat16").all() and (df["head_params"] == 0).all()
    assert df["accuracy"].between(0, 1).all() and (df["cached_layers"] == 1).all()
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["device"]["dtype"] == "bfloat16" and manifest["task"] == "generate"
    assert manifest["backbone"]["kind"] == "decoder"


@pytest.mark.parametrize("extra, message", [
    (("--layers", "7"), "has 2 blocks at encoder.layer"),
    (("--modules", "q_proj"), "query"),
    (("--task", "generate", "--references", "lora"), "needs a decoder"),
    (("--device", "cuda"), "CUDA"),
    (("--executor", "dask"), "local, ray, slurm"),
], ids=["layers", "modules", "generate-on-encoder", "device", "executor"])
def test_bad_requests_fail_before_any_run(extra, message, tmp_path, capsys):
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # never on the CPU test machines this suite targets
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        run(load_study("ablate_delta"), out, *extra)
    assert message in str(err.value)
    assert not (out / "results.csv").exists()
