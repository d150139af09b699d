"""Model families from local folders: tiny random-weight models of each family's config class go through
tokenize, pretrain and sft via `model.name: <folder>` (encoder-decoders through sft and evaluate); MoE facts and
router losses; 4-bit parameter counts; bitsandbytes left unloaded without quantization; encoder models refused."""
import contextlib
import json
import math
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from lancy.errors import LancyError
from lancy.models import (
    apply_lora,
    embed_as_pieces,
    load_config,
    load_model,
    memory_estimate,
    moe_facts,
    parameter_counts,
)
from lancy.tables import read_table
from lancy.tokenization import load_tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parents[1]
TEXTS = [f"review {i}: the film was {'good' if i % 2 else 'bad'} and the cast {i % 7} fine" for i in range(400)]


def _configs(vocab: int) -> dict:
    from transformers import (
        DeepseekV3Config,
        GPT2Config,
        LlamaConfig,
        MixtralConfig,
        Qwen2Config,
        Qwen3Config,
        Qwen3MoeConfig,
    )

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                 intermediate_size=64, max_position_embeddings=128, vocab_size=vocab)
    return {
        "gpt2": GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, vocab_size=vocab),
        "qwen2": Qwen2Config(**small),
        "llama": LlamaConfig(**small),
        "mixtral": MixtralConfig(**small, num_local_experts=4, num_experts_per_tok=2),
        "qwen3_moe": Qwen3MoeConfig(**small, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                    head_dim=16),
        "qwen3": Qwen3Config(**small, head_dim=16),
        # DeepSeek-V3's layout: a dense first layer, then routed experts (grouped top-k) beside a shared expert
        "deepseek_v3": DeepseekV3Config(**small, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
                                        moe_intermediate_size=32, n_group=1, topk_group=1, first_k_dense_replace=1,
                                        q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
                                        v_head_dim=16),
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("models")
    tokenizer = train_tokenizer(TEXTS, 300)
    result = {}
    for family, config in _configs(len(tokenizer)).items():
        config.eos_token_id = config.bos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
        AutoModelForCausalLM.from_config(config).save_pretrained(root / family)
        tokenizer.save_pretrained(root / family)
        result[family] = root / family
    return result


@pytest.mark.parametrize("family", ["mixtral", "qwen3_moe"])
def test_moe_detected_with_active_parameters_and_router_loss(folders, family):
    import torch

    model = load_model(str(folders[family]))
    facts = moe_facts(model)
    total = sum(p.numel() for p in model.parameters())
    assert facts["moe"] and facts["experts"] == 4 and facts["experts_per_token"] == 2
    assert total / 2 < facts["active_params"] < total  # half the experts' weights are idle per token
    assert facts["router_aux_loss"] and model.config.output_router_logits
    ids = torch.tensor([list(range(5, 37))])
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
        lm_loss = model(input_ids=ids, labels=ids, output_router_logits=False).loss
    assert out.aux_loss > 0 and out.loss == pytest.approx(lm_loss + model.config.router_aux_loss_coef * out.aux_loss)


@pytest.mark.parametrize("family", ["mixtral", "switch_transformers"])
def test_held_out_losses_leave_the_router_loss_out(folders, seq2seq_folders, family):
    """Training's loss includes the router's balancing loss; perplexity and answer loss measure the language
    model alone, so they must not."""
    import torch

    from lancy.evaluation import answer_loss, perplexity

    folder = {**folders, **seq2seq_folders}[family]
    model, tokenizer = load_model(str(folder)).eval(), load_tokenizer(str(folder))
    seq2seq = family == "switch_transformers"  # its labels: the completion stripped (lancy.packing)
    prompt, completion = tokenizer([TEXTS[1], "good" if seq2seq else " good"], add_special_tokens=False)["input_ids"]
    ids, labels = torch.tensor([prompt]), torch.tensor([completion + [tokenizer.eos_token_id]])
    with torch.no_grad():
        if seq2seq:
            out = model(input_ids=ids, labels=labels)
            lm_loss = model(input_ids=ids, labels=labels, output_router_logits=False).loss.item()
        else:  # the answer's tokens follow the prompt's: the loss of the last len(labels) predictions
            whole = torch.cat([ids, labels], 1)
            out = model(input_ids=whole, labels=torch.cat([torch.full_like(ids, -100), labels], 1))
            lm_loss = model(input_ids=whole, labels=torch.cat([torch.full_like(ids, -100), labels], 1),
                            output_router_logits=False).loss.item()
    assert out.loss.item() > lm_loss + 1e-4  # the router's loss is there to leave out
    row = {"prompt": TEXTS[1], "completion": " good"}
    assert answer_loss(model, tokenizer, [row], batch_size=1) == pytest.approx(lm_loss, rel=1e-5)
    if family == "mixtral":
        text = " ".join(TEXTS[:3])
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]])
        with torch.no_grad():
            lm_loss = model(input_ids=ids, labels=ids, output_router_logits=False).loss.item()
        assert perplexity(model, tokenizer, [text], 1)["perplexity"] == pytest.approx(math.exp(lm_loss), rel=1e-5)


@pytest.mark.parametrize(("family", "applies"), [("gpt2", True), ("qwen3", True), ("gemma2", False),
                                                 ("mixtral", False), ("t5", False)])
def test_chunked_loss_applies_where_the_logits_are_a_plain_linear_map(folders, seq2seq_folders, family, applies):
    """lancy.training.chunked_lm_loss on models as the stages load them: those whose loss is more than the head's
    cross-entropy keep their own (Gemma 2's soft-capped logits, Mixtral's router loss, which load_model turns on,
    T5's encoder-decoder); where it applies (a tied GPT-2 head, Qwen3), the loss is the model's own."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from lancy.training import chunked_lm_loss

    def load():
        if family == "gemma2":
            torch.manual_seed(0)
            return Gemma2ForCausalLM(Gemma2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                  num_key_value_heads=2, intermediate_size=64, head_dim=16,
                                                  vocab_size=300))
        return load_model(str({**folders, **seq2seq_folders}[family]))

    own, model = load().eval(), load().eval()  # eval: no dropout
    assert chunked_lm_loss(model) is applies
    if applies:
        ids = torch.randint(1, 300, (2, 16), generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(model(input_ids=ids, labels=ids).loss, own(input_ids=ids, labels=ids).loss)


def test_deepseek_v3_experts_without_an_auxiliary_loss(folders):
    """DeepSeek-V3 balances experts with a routing bias, and transformers adds no router loss for it: the facts
    say so, and router logits are not collected for nothing."""
    model = load_model(str(folders["deepseek_v3"]))
    facts = moe_facts(model)
    total = sum(p.numel() for p in model.parameters())
    routed = sum(p.numel() for name, p in model.named_parameters() if ".mlp.experts." in name)
    assert facts == {"moe": True, "experts": 4, "experts_per_token": 2, "active_params": total - routed // 2,
                     "router_aux_loss": False}
    assert 0 < routed < total and not model.config.output_router_logits


def test_4bit_weights_count_as_many_parameters_as_full_precision(folders):
    """bitsandbytes stores two 4-bit weights per byte: the counts (and the trainable share) are of weights."""
    from types import SimpleNamespace

    lora = SimpleNamespace(enabled=True, r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    full, packed = (load_model(str(folders["llama"]), quantize=quantize) for quantize in ("none", "4bit"))
    assert type(packed.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    assert parameter_counts(packed)["total_params"] == parameter_counts(full)["total_params"]
    assert parameter_counts(apply_lora(packed, lora)) == parameter_counts(apply_lora(full, lora))


def test_bitsandbytes_is_loaded_only_to_quantize(folders, tmp_path):
    """peft, LoRA's layer dispatch and TRL's GRPOTrainer import bitsandbytes whenever it is installed (seconds, and
    a CPU kernels warning): every stage, with and without LoRA, trains without loading it, and quantized
    loading still gets it (the 4-bit and QLoRA tests load it in this process, after the hook)."""
    import subprocess
    import sys

    script = f"""
import sys
import stages.pretrain, stages.sft, stages.grpo, stages.evaluate
from datasets import Dataset
from transformers import Trainer, TrainingArguments
from lancy.models import apply_lora, load_model
from lancy.params import Lora
model = apply_lora(load_model({str(folders["llama"])!r}), Lora(enabled=True, r=4, alpha=8))
rows = Dataset.from_list([{{"input_ids": list(range(5, 21)), "labels": list(range(5, 21))}}] * 2)
args = TrainingArguments(output_dir={str(tmp_path)!r}, max_steps=1, use_cpu=True, report_to="none",
                         save_strategy="no", per_device_train_batch_size=2)
Trainer(model=model, args=args, train_dataset=rows).train()
model.merge_and_unload()
assert "bitsandbytes" not in sys.modules, "bitsandbytes loaded without quantization"
import peft.tuners.lora.model as lora
print("QUANTIZING", file=sys.stderr, flush=True)
quantized = apply_lora(load_model({str(folders["llama"])!r}, quantize="4bit"), Lora(enabled=True, r=4, alpha=8))
assert "bitsandbytes" in sys.modules and lora.is_bnb_4bit_available()
assert type(quantized.base_model.model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit", quantized
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # bitsandbytes warns about its CPU kernels when it loads, on CPUs with AVX512-BF16: only once quantizing
    assert "gemm_4bit" not in result.stderr.split("QUANTIZING")[0] and "QUANTIZING" in result.stderr


def test_dense_model_and_memory_estimate(folders):
    assert moe_facts(load_model(str(folders["llama"]))) == {"moe": False}
    estimate = memory_estimate(1_000_000_000)
    assert estimate["weights_gib_fp32"] == pytest.approx(3.725, abs=1e-3)
    assert estimate["weights_gib_int4"] == estimate["weights_gib_bf16"] / 4


def test_encoder_only_is_refused_and_encoder_decoder_only_in_pretrain_and_grpo(tmp_path):
    from transformers import BertConfig, T5Config

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path / "bert")
    T5Config(d_model=32, num_layers=1, num_heads=2, d_ff=64).save_pretrained(tmp_path / "t5")
    with pytest.raises(LancyError, match="encoder-only model \\(bert\\): it cannot generate text"):
        load_config(str(tmp_path / "bert"))
    assert load_config(str(tmp_path / "t5")).is_encoder_decoder  # fine for sft and evaluate
    message = "encoder-decoder model \\(t5\\): the pretrain stage .* `pretrain.max_steps: 0`"
    with pytest.raises(LancyError, match=message):
        load_config(str(tmp_path / "t5"), "pretrain")
    with pytest.raises(LancyError, match="the grpo stage trains decoder-only"):
        load_config(str(tmp_path / "t5"), "grpo")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Embedded data through mix, with small params; each family then tokenizes and trains in it."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("families")
    for name in ("lancy", "stages"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(train_rows=100, test_rows=10)
    params["mixture"], params["corpus"] = {"imdb": 1.0, "wikitext": 0.0}, {"wikitext": 1.0}
    params["rl_mixture"] = {}
    params["mix"].update(sft_rows=40, rl_rows=4, corpus_chars=20_000)
    params["tokenize"]["max_length"] = 128
    params["pretrain"].update(max_steps=2, batch_size=2, logging_steps=1)
    params["sft"].update(max_steps=2, batch_size=2, logging_steps=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(root))
    for args in (["stages.download", "imdb"], ["stages.download", "wikitext"], ["stages.mix"]):
        subprocess.run([sys.executable, "-m", *args], cwd=root, env=env, check=True, capture_output=True)
    return root


@contextlib.contextmanager
def _params(**sections):
    """The cwd's params.yaml with these sections updated, restored afterwards."""
    original = Path("params.yaml").read_text()
    params = yaml.safe_load(original)
    for section, values in sections.items():
        params[section].update(values)
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        yield
    finally:
        Path("params.yaml").write_text(original)


def _scratch_tokenizer(**tokenize):
    """The tokenizer the tokenize stage trains from scratch with these `tokenize` params (in the cwd's workspace)."""
    import stages.tokenize

    with _params(model={"name": "scratch"}, tokenize=tokenize):
        stages.tokenize.main()
    return load_tokenizer("data/tokenized/tokenizer")


def _pieces(tokenizer, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("on_tasks", [False, True])
def test_a_scratch_tokenizer_trained_on_the_tasks_writes_labels_as_single_tokens(workspace, monkeypatch, on_tasks):
    monkeypatch.chdir(workspace)
    tokenizer = _scratch_tokenizer(tokenizer_on_tasks=on_tasks, label_tokens=False)
    pieces = [len(_pieces(tokenizer, " " + label)) for label in ("positive", "negative")]
    assert pieces == [1, 1] if on_tasks else min(pieces) > 1, pieces


def test_label_tokens_make_each_label_word_one_token_and_leave_other_text_as_it_was(workspace, monkeypatch):
    """`tokenize.label_tokens`: the corpus-only BPE plus one whole-word token per label word, so the perplexity of
    text without label words is the plain tokenizer's."""
    monkeypatch.chdir(workspace)
    plain = _scratch_tokenizer(tokenizer_on_tasks=False, label_tokens=False)
    labelled = _scratch_tokenizer(tokenizer_on_tasks=False, label_tokens=True)
    assert len(labelled) == len(plain) + 2  # the imdb rows' two label words, each split by the plain tokenizer
    assert _pieces(labelled, "Sentiment: positive")[-1:] == [" positive"]
    assert _pieces(labelled, " negative<|endoftext|>") == [" negative", "<|endoftext|>"]
    for text in (" positively", " nonnegative", "'positive'", "<br /><br />A film with no label word at all."):
        assert _pieces(labelled, text) == _pieces(plain, text), text
    wiki = read_table(Path("data/mixed/eval/wikitext"))["text"]
    assert all(_pieces(labelled, text) == _pieces(plain, text) for text in wiki if not re.search(
        r"\b(positive|negative)\b", text))


def test_label_tokens_the_corpus_never_had_leave_pretraining_as_their_pieces_mean(workspace, monkeypatch):
    """An added label token absent from the pretraining rows is only ever pushed down, like every unseen token, so
    ` positive` and ` negative` come out of pretraining nearly parallel and SFT can stall at chance (seed 2 did).
    The pretrain stage gives such a token the mean of its pieces' embeddings; a label word the corpus has keeps
    its trained row."""
    import stages.pretrain
    from lancy.tables import values_present, write_table
    from lancy.tokenization import added_token_pieces

    monkeypatch.chdir(workspace)
    with _params(model=dict(vocab_size=512, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)):
        tokenizer = _scratch_tokenizer(tokenizer_on_tasks=False, label_tokens=True)
        pieces = added_token_pieces(tokenizer)
        positive, negative = (tokenizer.convert_tokens_to_ids(word) for word in (" positive", " negative"))
        assert set(pieces) == {positive, negative}
        assert ["".join(tokenizer.convert_ids_to_tokens(pieces[t])) for t in (positive, negative)] == [
            "Ġpositive", "Ġnegative"] and min(len(ids) for ids in pieces.values()) > 1
        blocks = read_table(Path("data/tokenized/pretrain"))
        assert values_present(blocks, "input_ids", pieces) == set()  # the corpus (wikitext) has no label word
        # ... until one block starts with ` positive`
        blocks = blocks.map(lambda row, i: {"input_ids": [positive] + row["input_ids"][1:]} if i == 0 else row,
                            with_indices=True)
        write_table(blocks, Path("data/tokenized/pretrain"))
        stages.pretrain.main()
    weight = load_model("models/pretrain").get_input_embeddings().weight.detach()
    assert torch.equal(weight[negative], weight[pieces[negative]].mean(dim=0))
    assert not torch.allclose(weight[positive], weight[pieces[positive]].mean(dim=0))


@pytest.mark.parametrize("tied", [True, False])
def test_embed_as_pieces_sets_the_embedding_and_an_untied_output_row(tied):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=40, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config)
    before = model.lm_head.weight.detach().clone()
    embed_as_pieces(model, {39: [3, 4, 5]})
    embedding, output = model.get_input_embeddings().weight.detach(), model.lm_head.weight.detach()
    assert torch.equal(embedding[39], embedding[3:6].mean(dim=0))
    assert torch.equal(output[39], output[3:6].mean(dim=0)) and not torch.equal(output[39], before[39])
    assert torch.equal(output[:39], before[:39]) and (output.data_ptr() == embedding.data_ptr()) == tied


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "qwen3", "llama", "mixtral", "qwen3_moe", "deepseek_v3"])
def test_family_through_tokenize_pretrain_and_sft(folders, workspace, family, monkeypatch):
    import stages.pretrain
    import stages.sft
    import stages.tokenize

    monkeypatch.chdir(workspace)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["model"]["name"] = str(folders[family])
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in (stages.tokenize, stages.pretrain, stages.sft):
        stage.main()
    summary = json.loads(Path("metrics/sft/metrics.json").read_text())
    assert summary["step"] == 2 and summary["moe"] == (family in ("mixtral", "qwen3_moe", "deepseek_v3"))
    assert json.loads(Path("metrics/tokenize.json").read_text())["vocab_size"] == 300  # the folder's own tokenizer
    assert (Path("models/sft") / "config.json").exists()
    assert json.loads((Path("models/sft") / "config.json").read_text())["model_type"] == family


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "qwen3", "llama", "mixtral", "qwen3_moe", "deepseek_v3"])
def test_packed_rows_keep_examples_apart_in_every_family(folders, family):
    """The packed collator's batches give each example the logits it has alone, whatever the family."""
    import torch
    from datasets import Dataset

    from lancy.packing import PackedCollator, pack_sft

    model = load_model(str(folders[family])).eval()
    examples = [{"input_ids": list(range(5, 5 + n)), "labels": list(range(5, 5 + n))} for n in (30, 20, 12)]
    rows = list(pack_sft(Dataset.from_list(examples), 64))
    batch = PackedCollator(pad_id=0)(rows)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        for example in examples:
            n = len(example["input_ids"])
            alone = model(input_ids=torch.tensor([example["input_ids"]])).logits[0]
            row, start = next((r, s) for r, row in enumerate(rows) for s in range(len(row["input_ids"]) - n + 1)
                              if row["input_ids"][s : s + n] == example["input_ids"] and row["position_ids"][s] == 0)
            torch.testing.assert_close(packed[row, start : start + n], alone, atol=1e-4, rtol=0)


def test_attention_resolution_on_this_cpu():
    from lancy.models import attention_implementation

    assert attention_implementation("auto") == "sdpa"  # no CUDA here: flash-attn is never chosen
    assert attention_implementation("eager") == "eager"
    with pytest.raises(LancyError, match="needs CUDA and the flash-attn package"):
        attention_implementation("flash_attention_2")


def test_effective_batch_size_counts_processes_and_accumulation(folders, monkeypatch):
    from types import SimpleNamespace

    from lancy.training import run_facts

    monkeypatch.setenv("WORLD_SIZE", "2")
    section = SimpleNamespace(batch_size=8, gradient_accumulation_steps=4, max_steps=10, epochs=0.0)
    facts = run_facts(load_model(str(folders["llama"])), section, tokens_per_row=128)
    assert facts["processes"] == 2 and facts["effective_batch_size"] == 64
    assert facts["token_budget"] == 10 * 64 * 128 and facts["attention"] == "sdpa"


def test_packing_off_trains_one_example_per_row(workspace, monkeypatch):
    import stages.sft
    import stages.tokenize

    monkeypatch.chdir(workspace)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["model"]["name"] = "scratch"
    params["model"].update(vocab_size=512, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    params["tokenize"]["packing"] = False
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages.tokenize.main()
    metrics = json.loads(Path("metrics/tokenize.json").read_text())
    sft, pretrain = read_table(Path("data/tokenized/sft")), read_table(Path("data/tokenized/pretrain"))
    assert not metrics["packing"] and len(sft) == metrics["sft"]["examples"] == 40
    assert len({len(ids) for ids in pretrain["input_ids"]}) > 1  # documents of their own lengths, not blocks
    import stages.pretrain

    stages.pretrain.main()
    stages.sft.main()
    assert json.loads(Path("metrics/sft/metrics.json").read_text())["step"] == 2


def test_lora_sft_reports_its_trainable_share_and_saves_a_merged_model(workspace, monkeypatch):
    import stages.sft

    monkeypatch.chdir(workspace)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["sft"]["lora"].update(enabled=True, r=4, alpha=8, target_modules="all-linear")
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert Path("models/pretrain/config.json").exists()  # from the tests above
    stages.sft.main()
    summary = json.loads(Path("metrics/sft/metrics.json").read_text())
    assert 0 < summary["trainable_share"] < 0.5 and summary["trainable_params"] < summary["total_params"]
    merged = load_model("models/sft")  # adapters merged in: a plain model, no adapter files
    assert not Path("models/sft/adapter_config.json").exists()
    assert not any("lora" in name for name, _ in merged.named_parameters())


@pytest.mark.parametrize("quantize", ["4bit", "8bit"])
def test_qlora_sft_on_cpu_merges_into_the_full_precision_base(workspace, monkeypatch, quantize):
    import stages.sft

    monkeypatch.chdir(workspace)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["sft"]["lora"].update(enabled=True, r=4, alpha=8, quantize=quantize, merge=True)
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages.sft.main()
    summary = json.loads(Path("metrics/sft/metrics.json").read_text())
    assert summary["step"] == 2 and 0 < summary["trainable_share"] < 0.5
    merged = load_model("models/sft")
    assert all(p.dtype.is_floating_point and p.element_size() == 4 for p in merged.parameters())  # fp32 again
    assert not any("lora" in name for name, _ in merged.named_parameters())


def test_adapters_kept_alone_are_merged_on_load(workspace, monkeypatch):
    import stages.sft

    monkeypatch.chdir(workspace)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["sft"]["lora"].update(enabled=True, r=4, alpha=8, quantize="none", merge=False)
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages.sft.main()
    config = json.loads(Path("models/sft/adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "models/pretrain"
    assert not Path("models/sft/model.safetensors").exists()  # the adapters alone
    model = load_model("models/sft")  # later stages: the base with the adapters merged in
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_grpo_with_format_reward_and_a_local_reward_model(workspace, tmp_path, monkeypatch):
    """One GRPO step with LoRA from the SFT adapters above, rewarded by the task, the format and a reward model."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    import stages.grpo

    monkeypatch.chdir(workspace)
    tokenizer = train_tokenizer(TEXTS, 300)
    config = LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=32, vocab_size=len(tokenizer), num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "reward")
    tokenizer.save_pretrained(tmp_path / "reward")
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["grpo"].update(max_steps=1, batch_size=4, num_generations=2, logging_steps=1, max_completion_length=4,
                          format_weight=0.5, reward_model=str(tmp_path / "reward"))
    params["grpo"]["lora"].update(enabled=True, r=4, alpha=8)  # LoRA on top of the SFT adapters saved alone
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages.grpo.main()
    summary = json.loads(Path("metrics/grpo/metrics.json").read_text())
    assert summary["step"] == 1 and 0 < summary["trainable_share"] < 0.5
    assert {"task_reward", "format_reward", "reward"} <= set(summary["rewards"])
    assert any(key.startswith("reward") and key != "rewards" for key in summary)


def test_grpo_max_steps_zero_passes_the_sft_model_through(workspace, monkeypatch):
    """`grpo.max_steps: 0` (mixture-search proxies): models/grpo is the SFT model, merged, with the run's facts."""
    import stages.grpo

    monkeypatch.chdir(workspace)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["grpo"]["max_steps"] = 0
    params["grpo"]["lora"].update(enabled=True, r=4, alpha=8)  # not applied: nothing trains
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages.grpo.main()
    sft, grpo = load_model("models/sft"), load_model("models/grpo")
    assert not any("lora" in name for name, _ in grpo.named_parameters())
    assert all(torch.equal(a, b) for a, b in zip(sft.state_dict().values(), grpo.state_dict().values(), strict=True))
    summary = json.loads(Path("metrics/grpo/metrics.json").read_text())
    assert summary["prompts"] > 0 and "step" not in summary


@pytest.fixture(scope="module")
def seq2seq_folders(tmp_path_factory) -> dict[str, Path]:
    from transformers import AutoModelForSeq2SeqLM, BartConfig, SwitchTransformersConfig, T5Config

    root = tmp_path_factory.mktemp("seq2seq")
    tokenizer = train_tokenizer(TEXTS, 300)
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               decoder_start_token_id=tokenizer.pad_token_id)
    configs = {
        "t5": T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, **ids),
        "bart": BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_position_embeddings=256, bos_token_id=tokenizer.eos_token_id,
                           **ids),
        # every second layer a top-1 mixture of experts, as in google/switch-base-8
        "switch_transformers": SwitchTransformersConfig(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64,
                                                        num_layers=2, num_decoder_layers=2, num_heads=4, num_experts=4,
                                                        expert_capacity=64, encoder_sparse_step=2,
                                                        decoder_sparse_step=2, **ids),
    }
    for family, config in configs.items():
        AutoModelForSeq2SeqLM.from_config(config).save_pretrained(root / family)
        tokenizer.save_pretrained(root / family)
    return {family: root / family for family in configs}


def test_switch_transformers_trains_its_router_losses(seq2seq_folders):
    """Switch Transformers adds its router z-loss and load-balancing loss only when forward is asked to: lancy's
    model always is, so the LM loss that training sees includes them."""
    import torch

    model = load_model(str(seq2seq_folders["switch_transformers"]))
    facts = moe_facts(model)
    total = sum(p.numel() for p in model.parameters())
    routed = sum(p.numel() for name, p in model.named_parameters() if ".mlp.experts." in name)
    assert facts == {"moe": True, "experts": 4, "experts_per_token": 1, "active_params": total - routed * 3 // 4,
                     "router_aux_loss": True}
    assert model.config._attn_implementation == "eager"  # auto: the family has no sdpa attention
    ids, labels = torch.tensor([list(range(5, 29))]), torch.tensor([list(range(40, 46))])
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
        lm_loss = model(input_ids=ids, labels=labels, output_router_logits=False).loss
    config = model.config
    router = (config.router_z_loss_coef * (out.encoder_z_loss + out.decoder_z_loss)
              + config.router_aux_loss_coef * (out.encoder_aux_loss + out.decoder_aux_loss))
    assert out.encoder_aux_loss > 0 and out.decoder_aux_loss > 0 and out.loss == pytest.approx(lm_loss + router)


@pytest.mark.parametrize("family", ["t5", "bart", "switch_transformers"])
def test_encoder_decoder_through_sft_and_evaluate(seq2seq_folders, workspace, monkeypatch, family):
    import stages.evaluate
    import stages.pretrain
    import stages.sft
    import stages.tokenize

    monkeypatch.chdir(workspace)
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["model"]["name"] = str(seq2seq_folders[family])
    params["pretrain"]["max_steps"] = 0  # handed to sft unchanged
    params["sft"]["lora"]["enabled"] = False
    params["evaluate"].update(max_rows=6, batch_size=2, generate_pretrain=False)  # the workspace is shared
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in (stages.tokenize, stages.pretrain, stages.sft):
        stage.main()
    assert json.loads(Path("metrics/tokenize.json").read_text())["packing"] is False
    assert json.loads(Path("metrics/pretrain/metrics.json").read_text())["token_budget"] == 0
    summary = json.loads(Path("metrics/sft/metrics.json").read_text())
    moe = family == "switch_transformers"
    assert summary["step"] == 2 and summary["moe"] == moe and summary.get("router_aux_loss", False) == moe
    monkeypatch.setattr("sys.argv", ["evaluate", "sft"])
    stages.evaluate.main()
    result = json.loads(Path("metrics/eval/sft_details.json").read_text())
    assert json.loads(Path("metrics/eval/sft.json").read_text())["imdb"] == {
        key: result["imdb"][key] for key in ("accuracy", "answer_loss")}  # the top-level metrics: no counts
    assert result["imdb"]["rows"] == 6 and 0 <= result["imdb"]["accuracy"] <= 1
    assert result["wikitext"]["perplexity"] is None  # no plain-text perplexity for an encoder-decoder
    rows = pq.read_table("data/results/sft").to_pandas()  # per row: answer losses for all, answers for max_rows
    imdb = rows[rows.dataset == "imdb"]
    assert imdb["generated"].notna().sum() == 6 and len(imdb) == result["imdb"]["loss_rows"] > 6
    assert result["imdb"]["answer_loss"] == pytest.approx(imdb.nll.sum() / imdb.tokens.sum())
    assert imdb["id"].is_unique and "wikitext" not in set(rows.dataset)
    monkeypatch.setattr("sys.argv", ["evaluate", "pretrain"])  # the pretrained model: answer losses alone
    stages.evaluate.main()
    result = json.loads(Path("metrics/eval/pretrain_details.json").read_text())["imdb"]
    assert "accuracy" not in result and result["loss_rows"] > 6 and result["answer_loss"] > 0
    assert pq.read_table("data/results/pretrain").to_pandas()["generated"].isna().all()
    params["evaluate"]["generate_pretrain"] = True
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages.evaluate.main()
    assert json.loads(Path("metrics/eval/pretrain_details.json").read_text())["imdb"]["rows"] == 6
