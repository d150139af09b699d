"""tokenize: the tokenizer, pretraining rows, SFT rows (packed unless tokenize.packing is false), RL prompts.

Writes data/tokenized/{tokenizer/, pretrain.parquet, pretrain_val.parquet, sft.parquet, rl.jsonl}
and metrics/tokenize.json.
"""
from pathlib import Path

from datasets import Dataset

from lancy import params as P
from lancy.errors import run_stage
from lancy.files import read_jsonl, require, write_json, write_jsonl
from lancy.models import is_seq2seq, load_config
from lancy.packing import document_rows, encode_sft, fit_prompt, pack_blocks, pack_sft, seq2seq_examples
from lancy.tokenization import load_tokenizer, train_tokenizer

PARAMS = ("model.name", "model.vocab_size", "tokenize")
MIXED, OUT = Path("data/mixed"), Path("data/tokenized")


def token_counts(rows: list[dict], ids: list[list[int]]) -> dict[str, int]:
    """Tokens per source dataset."""
    counts = {}
    for row, tokens in zip(rows, ids, strict=True):
        counts[row["source"]] = counts.get(row["source"], 0) + len(tokens)
    return counts


def main() -> None:
    p = P.load(PARAMS)
    length = p.tokenize.max_length
    require(*(MIXED / f"{name}.jsonl" for name in ("corpus", "corpus_val", "sft", "rl")))
    corpus_docs = read_jsonl(MIXED / "corpus.jsonl")
    corpus = [d["text"] for d in corpus_docs]
    corpus_val = [d["text"] for d in read_jsonl(MIXED / "corpus_val.jsonl")]
    sft_rows, rl_rows = read_jsonl(MIXED / "sft.jsonl"), read_jsonl(MIXED / "rl.jsonl")
    seq2seq = False
    if p.model.name == "scratch":
        tokenizer = train_tokenizer(corpus, p.model.vocab_size)
    else:
        seq2seq = is_seq2seq(load_config(p.model.name))  # refuses a model lancy cannot train, before any work
        tokenizer = load_tokenizer(p.model.name)
    encode = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tokenizer.eos_token_id

    corpus_ids = encode(corpus)
    if p.tokenize.packing:
        blocks, dropped_tail = pack_blocks(corpus_ids, length, eos)
        blocks = blocks.tolist()
    else:
        blocks, dropped_tail = document_rows(corpus_ids, length, eos)
    val_blocks, _ = pack_blocks(encode(corpus_val), length, eos)  # packed either way: one yardstick
    pretrain_tokens = sum(map(len, blocks))

    if seq2seq:  # encoder input and decoder labels: nothing to pack
        examples, truncated = seq2seq_examples(tokenizer, sft_rows, length)
        packed = Dataset.from_list(examples)
    else:
        examples, truncated = encode_sft(tokenizer, sft_rows, length)
        packed = pack_sft(examples, length) if p.tokenize.packing else Dataset.from_list(examples)
    sft_tokens = sum(len(e["input_ids"]) for e in examples)
    per_source = token_counts(sft_rows, [e["input_ids"] for e in examples])

    # GRPO prompts must fit max_length: a longer one loses its middle, like an SFT prompt.
    rl_truncated = 0
    for row, ids in zip(rl_rows, encode([r["prompt"] for r in rl_rows]), strict=True):
        if len(ids) > length:
            row["prompt"] = tokenizer.decode(fit_prompt(ids, length))
            rl_truncated += 1

    OUT.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(OUT / "tokenizer")
    Dataset.from_dict({"input_ids": blocks}).to_parquet(OUT / "pretrain.parquet")
    Dataset.from_dict({"input_ids": val_blocks.tolist()}).to_parquet(OUT / "pretrain_val.parquet")
    packed.to_parquet(OUT / "sft.parquet")
    write_jsonl(OUT / "rl.jsonl", rl_rows)
    write_json(OUT / "pretrain_sources.json", token_counts(corpus_docs, corpus_ids))  # for the training facts
    write_json(OUT / "sft_sources.json", per_source)
    write_json(Path("metrics/tokenize.json"), {
        "vocab_size": len(tokenizer),
        "packing": p.tokenize.packing and not seq2seq,
        "pretrain": {"rows": len(blocks), "tokens": pretrain_tokens, "dropped_tokens": dropped_tail,
                     "val_blocks": len(val_blocks), "packing_efficiency": pretrain_tokens / (len(blocks) * length)},
        "sft": {"examples": len(examples), "tokens": sft_tokens, "rows": len(packed), "truncated": truncated,
                "completion_tokens": sum(sum(t != -100 for t in e["labels"]) for e in examples),
                "packing_efficiency": sft_tokens / (len(packed) * length),
                "sources": {name: {"tokens": n, "share": n / sft_tokens} for name, n in per_source.items()}},
        "rl": {"prompts": len(rl_rows), "truncated": rl_truncated},
    })
    print(f"{len(blocks)} pretraining rows, {len(examples)} SFT examples in {len(packed)} rows "
          f"({sft_tokens / (len(packed) * length):.3f} real tokens), {len(rl_rows)} RL prompts")


if __name__ == "__main__":
    run_stage(main)
