"""Data-path and training-throughput benchmarks on the real IMDB + SST-2 samples (CPU).

1. tokenize + pack throughput of the tokenize stage's code against a per-example `datasets.map`
2. packing efficiency: SFT packing vs padded batches at max_length 512, and pretraining blocks
3. SFT training: packed vs padded, same model init, same data, same real tokens per optimizer step; and packed
   with the SFT stage's fused LM head (only the completions' positions projected) against the model's own head
4. the fused LM head against the model's own by the share of labelled positions: where it stops paying on the CPU
"""
import random
import time
from pathlib import Path

import torch

from lancy.catalog import CATALOG
from lancy.files import read_jsonl
from lancy.harmonize import harmonize_rows
from lancy.mixing import sample_tasks, take
from lancy.packing import IGNORE, PackedCollator, encode_docs, encode_sft, pack_blocks, pack_sft, sft_example
from lancy.tables import list_lengths
from lancy.tokenization import train_tokenizer

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
MAX_LENGTH = 512


def load_mixture(rows: int, seed: int = 0):
    """(Dataset of IMDB + SST-2 SFT records, 70/30 by rows, sampled as the mix stage samples them; where they came
    from): the real samples when present, else the stand-ins."""
    from datasets import Dataset

    from lancy import embedded

    pools, origin = {}, "real samples (../shared/data/real)"
    for name, folder in (("imdb", "imdb"), ("sst2", "glue/sst2")):
        path = REAL / folder / "train.jsonl"
        if path.exists():
            raw = read_jsonl(path)
        else:
            raw, origin = embedded.generate(name, "train", 3000, seed), "embedded stand-ins (real samples absent)"
        records = harmonize_rows(CATALOG[name], raw, "train", {})[0]
        pools[name] = Dataset.from_dict({"source": [name] * len(records), "prompt": [r["prompt"] for r in records],
                                         "completion": [r["completion"] for r in records],
                                         "record_chars": [len(r["prompt"]) + len(r["completion"]) for r in records]})
    sft, _, order, _, _ = sample_tasks(pools, {"imdb": 0.7, "sst2": 0.3}, rows, 0, seed, upsample=False)
    return take(pools, sft, order, ["source", "prompt", "completion"]).flatten_indices(), origin


def sft_examples(records, tokenizer):
    """The SFT examples of `records`, as the tokenize stage encodes them (one process here)."""
    return records.map(encode_sft, batched=True, fn_kwargs={"tokenizer": tokenizer, "max_length": MAX_LENGTH},
                       remove_columns=records.column_names, load_from_cache_file=False)


def bench_tokenize(records, tokenizer) -> dict:
    """Tokens per CPU-second (all threads' CPU time, so per core) of our path and of a per-example map.

    Per core, both are bound by the tokenizer itself; the batched path also spreads it over the cores
    (wall-clock speedup), which a per-example map cannot.
    """
    def ours():  # what the tokenize stage runs
        examples = sft_examples(records, tokenizer)
        pack_sft(examples, MAX_LENGTH)
        return int(list_lengths(examples, "input_ids").sum())

    def per_example_map():
        def encode(row):
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            example, _ = sft_example(prompt, completion, MAX_LENGTH)
            return example

        mapped = records.map(encode, remove_columns=records.column_names, load_from_cache_file=False)
        return sum(len(ids) for ids in mapped["input_ids"])

    results = {}
    for name, run in (("lancy", ours), ("per_example_map", per_example_map)):
        run()  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        tokens = run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        results[name] = {"tokens": tokens, "cpu_s": cpu, "wall_s": wall, "tokens_per_core_s": tokens / cpu}
    results["speedup"] = results["lancy"]["tokens_per_core_s"] / results["per_example_map"]["tokens_per_core_s"]
    results["wall_speedup"] = results["per_example_map"]["wall_s"] / results["lancy"]["wall_s"]
    return results


def token_batches(rows: list[dict], real_tokens_per_step: int) -> list[list[dict]]:
    """Consecutive rows until a step holds the real-token budget, so both runs see equal tokens per step."""
    batches, batch, tokens = [], [], 0
    for row in rows:
        batch.append(row)
        tokens += len(row["input_ids"])
        if tokens >= real_tokens_per_step:
            batches.append(batch)
            batch, tokens = [], 0
    return batches


def bench_packing(examples, corpus_docs, batch_size: int = 8) -> dict:
    """Real tokens per row slot: SFT examples (a Dataset) packed and in shuffled padded batches; pretraining
    blocks of `corpus_docs` (a Dataset of documents' token ids, EOS included)."""
    packed = pack_sft(examples, MAX_LENGTH)
    lengths = list_lengths(examples, "input_ids").tolist()
    real = sum(lengths)
    shuffled = random.Random(0).sample(lengths, len(lengths))
    padded_slots = sum(
        len(batch) * max(batch) for batch in (shuffled[i : i + batch_size] for i in range(0, len(shuffled), batch_size))
    )
    blocks, dropped = pack_blocks(corpus_docs, MAX_LENGTH)
    block_tokens = len(blocks) * MAX_LENGTH
    return {
        "sft_packed_efficiency": real / (len(packed) * MAX_LENGTH),
        "sft_padded_efficiency": real / padded_slots,
        "pretrain_block_efficiency": block_tokens / (block_tokens + dropped),
        "examples": len(examples), "real_tokens": real, "packed_rows": len(packed),
    }


def _model(vocab_size: int, seed: int, head: str = "own"):
    """The embedded default's Llama with its own LM head, SFT's `fused` one (called with fused_lm_head=True) or
    pretraining's `chunked` loss."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lancy.training import chunked_lm_loss, fused_lm_head

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=4, intermediate_size=512, max_position_embeddings=MAX_LENGTH,
                         tie_word_embeddings=True)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config)
    if head == "fused":
        fused_lm_head(model)
    elif head == "chunked" and not chunked_lm_loss(model):
        raise RuntimeError("the chunked loss did not apply to the benchmark's model")
    return model


def _pad_collate(batch: list[dict], pad_id: int) -> dict:
    """The usual recipe: right padding to the longest row, with an attention mask."""
    width = max(len(e["input_ids"]) for e in batch)
    ids = [e["input_ids"] + [pad_id] * (width - len(e["input_ids"])) for e in batch]
    labels = [e["labels"] + [IGNORE] * (width - len(e["labels"])) for e in batch]
    mask = [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in batch]
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask),
            "use_cache": False}


@torch.no_grad()
def _held_out_loss(model, examples: list[dict], pad_id: int) -> float:
    """Mean completion loss per token on held-out examples, one at a time (no padding or packing involved)."""
    model.eval()
    total, count = 0.0, 0
    for e in examples:
        out = model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]]))
        n = sum(label != IGNORE for label in e["labels"][1:])
        total, count = total + out.loss.item() * n, count + n
    model.train()
    return total / count


def bench_training(examples: list[dict], held_out: list[dict], tokenizer, steps: int, rows_per_step: int) -> dict:
    """Packed vs padded SFT: same init, and every optimizer step sees the same examples either way.

    Each step takes consecutive examples (seeded order) up to rows_per_step x 512 x 0.95 real tokens; the
    padded run pads them to the longest (with an attention mask), the packed runs pack them best-fit into
    512-token rows (no mask, restarting position_ids). `packed_fused` is the packed run through the SFT stage's
    fused LM head (lancy.training.fused_lm_head). Quality parity: the held-out completion loss after each run.
    """
    from datasets import Dataset

    pad = tokenizer.pad_token_id
    steps_examples = token_batches(random.Random(0).sample(examples, len(examples)),
                                   int(rows_per_step * MAX_LENGTH * 0.95))[:steps]
    packed = PackedCollator(pad)
    collate = {"packed": packed, "packed_fused": lambda rows: {**packed(rows), "fused_lm_head": True},
               "padded": lambda batch: _pad_collate(batch, pad)}
    results = {}
    for name in ("packed", "padded", "packed_fused"):
        model = _model(len(tokenizer), seed=0, head="fused" if name == "packed_fused" else "own")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        real, slots, elapsed = 0, 0, 0.0
        for batch in steps_examples:
            rows = batch if name == "padded" else list(pack_sft(Dataset.from_list(batch), MAX_LENGTH))
            inputs = collate[name](rows)
            start = time.perf_counter()
            loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            elapsed += time.perf_counter() - start
            real += sum(len(e["input_ids"]) for e in batch)
            slots += inputs["input_ids"].numel()
        results[name] = {
            "steps": len(steps_examples), "real_tokens": real, "slots": slots, "seconds": elapsed,
            "real_tokens_per_s": real / elapsed, "held_out_loss": _held_out_loss(model, held_out, pad),
        }
    results["speedup"] = results["packed"]["real_tokens_per_s"] / results["padded"]["real_tokens_per_s"]
    results["loss_gap"] = abs(results["packed"]["held_out_loss"] / results["padded"]["held_out_loss"] - 1)
    results["fused_speedup"] = results["packed_fused"]["real_tokens_per_s"] / results["packed"]["real_tokens_per_s"]
    results["fused_loss_gap"] = abs(results["packed_fused"]["held_out_loss"] / results["packed"]["held_out_loss"] - 1)
    return results


def bench_head_by_share(shares=(0.1, 0.25, 0.5, 1.0), steps: int = 6, vocab_size: int = 4096) -> dict:
    """Seconds per training step (forward, backward, AdamW) of the embedded default's model on 16 x 256 random
    tokens, a seeded random `share` of them labelled, with the model's own LM head, SFT's fused one and
    pretraining's chunked loss; and the loss gap of the chunked loss to the model's own at the first step."""
    results = {}
    for share in shares:
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab_size, (16, 256), generator=generator)
        labels = ids.masked_fill(torch.rand(ids.shape, generator=generator) >= share, IGNORE)
        for name in ("own", "fused", "chunked"):
            model = _model(vocab_size, seed=0, head=name)
            extra = {"fused_lm_head": True} if name == "fused" else {}
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            for step in range(steps + 1):  # the first step warms up
                if step == 1:
                    start = time.perf_counter()
                loss = model(input_ids=ids, labels=labels, use_cache=False, **extra).loss
                if step == 0:
                    results.setdefault(str(share), {})[f"{name}_first_loss"] = loss.item()
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            results.setdefault(str(share), {})[name] = (time.perf_counter() - start) / steps
        result = results[str(share)]
        result["speedup"] = result["own"] / result["fused"]
        result["chunked_speedup"] = result["own"] / result["chunked"]
        result["chunked_loss_gap"] = abs(result["chunked_first_loss"] / result["own_first_loss"] - 1)
    return results


def run(quick: bool) -> dict:
    records, origin = load_mixture(1000 if quick else 6000)
    tokenizer = train_tokenizer([p + c for p, c in zip(records["prompt"], records["completion"], strict=True)], 8192)
    examples = sft_examples(records, tokenizer)
    docs = records.select_columns(["prompt"]).rename_column("prompt", "text").map(
        encode_docs, batched=True, fn_kwargs={"tokenizer": tokenizer, "eos_id": tokenizer.eos_token_id},
        remove_columns=["text"])
    rows = examples.select_columns(["input_ids", "labels"]).to_list()
    steps = 8 if quick else 40
    return {
        "data": origin,
        "tokenize": bench_tokenize(records, tokenizer),
        "packing": bench_packing(examples, docs),
        "training": bench_training(rows[:-64], rows[-64:], tokenizer, steps=steps, rows_per_step=8),
        "head_by_share": bench_head_by_share(steps=2 if quick else 6),
        "threads": torch.get_num_threads(),
    }
