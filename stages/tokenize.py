"""tokenize: the tokenizer, pretraining rows, SFT rows (packed unless tokenize.packing is false), RL prompts.

Every step is a batched map over memory-mapped tables in `num_proc` processes (each tokenizing on one thread), or
Ray Data tasks over the Parquet row groups and packing ranges with `data.engine: ray` (lancy.ray_data: the same
bytes out); a scratch tokenizer trains on a bounded seeded sample (`tokenize.tokenizer_sample_chars`). Writes
data/tokenized/{tokenizer/, pretrain/, pretrain_val/, sft/, rl/} (Parquet shards), the token counts per source
and metrics/tokenize.json.
"""
import itertools
import os
from pathlib import Path

import pyarrow as pa
from datasets import Features, List, Value

from lancy import packing, ray_data
from lancy import params as P
from lancy.errors import run_stage
from lancy.files import write_json
from lancy.models import is_seq2seq, load_config
from lancy.packing import encode_docs, encode_sft, fit_prompts, seq2seq_examples, token_features
from lancy.tables import int_column, list_lengths, processes, read_table, write_table
from lancy.tokenization import add_label_tokens, load_tokenizer, task_texts, train_tokenizer, training_texts

PARAMS = ("seed", "num_proc", "data.engine", "model.name", "model.vocab_size", "tokenize")
MIXED, OUT = Path("data/mixed"), Path("data/tokenized")
# The columns of encode_sft and seq2seq_examples (token ids as datasets infers Python ints: int64).
EXAMPLE_FEATURES = Features({"input_ids": List(Value("int64")), "labels": List(Value("int64")),
                             "truncated": Value("bool"), "completion_tokens": Value("int64")})


def tokens_by_source(dataset) -> dict[str, int]:
    """Tokens per source dataset (column `source`, lengths of `input_ids`)."""
    table = pa.table({"source": dataset.data.column("source"), "tokens": list_lengths(dataset, "input_ids")})
    sums = table.group_by("source").aggregate([("tokens", "sum")])
    return {row["source"]: row["tokens_sum"] for row in sums.to_pylist()}


def main() -> None:
    p = P.load(PARAMS)
    length, num_proc = p.tokenize.max_length, p.num_proc
    tables = {name: read_table(MIXED / name) for name in ("corpus", "corpus_val", "sft", "rl")}
    corpus, sft_rows, rl_rows = tables["corpus"], tables["sft"], tables["rl"]
    seq2seq = False
    if p.model.name == "scratch":
        sample = training_texts(corpus, p.tokenize.tokenizer_sample_chars, p.seed)
        if p.tokenize.tokenizer_on_tasks:  # label words become whole tokens
            sample = itertools.chain(sample, task_texts(sft_rows))
        tokenizer = train_tokenizer(sample, p.model.vocab_size)
        if p.tokenize.label_tokens:  # one token per label word, the corpus tokenized as without
            print(f"label words added as tokens: {add_label_tokens(tokenizer, sft_rows, rl_rows)}")
    else:
        seq2seq = is_seq2seq(load_config(p.model.name))  # refuses a model lancy cannot train, before any work
        tokenizer = load_tokenizer(p.model.name)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the parallelism is num_proc processes, one thread each
    engine = ray_data if p.data.engine == "ray" else packing  # where the maps and the packing run
    if engine is ray_data:
        ray_data.start(num_proc)

    def mapped(name: str, function, features, keep=(), **kwargs):
        dataset = tables[name]
        features = Features({**{column: dataset.features[column] for column in keep}, **features})  # kept: as they are
        if engine is ray_data:
            return ray_data.map_table(MIXED / name, function, features, keep, tokenizer=tokenizer, **kwargs)
        return dataset.map(function, batched=True, fn_kwargs={"tokenizer": tokenizer, **kwargs}, features=features,
                           remove_columns=[c for c in dataset.column_names if c not in keep],
                           num_proc=processes(num_proc, len(dataset)), desc=function.__name__)

    eos = tokenizer.eos_token_id
    docs = mapped("corpus", encode_docs, token_features("input_ids"), keep=("source",), eos_id=eos)
    if p.tokenize.packing:
        blocks, dropped_tail = engine.pack_blocks(docs, length, num_proc)
    else:
        blocks, dropped_tail = engine.document_rows(docs, length, num_proc)
    val_docs = mapped("corpus_val", encode_docs, token_features("input_ids"), eos_id=eos)
    val_blocks, _ = engine.pack_blocks(val_docs, length, num_proc)  # packed either way: one yardstick
    pretrain_tokens = int(list_lengths(blocks, "input_ids").sum())

    # encoder-decoder: encoder input and decoder labels, nothing to pack
    examples = mapped("sft", seq2seq_examples if seq2seq else encode_sft, EXAMPLE_FEATURES, keep=("source",),
                      max_length=length)
    packed = engine.pack_sft(examples, length, num_proc) if p.tokenize.packing and not seq2seq else \
        examples.select_columns(["input_ids", "labels"])
    sft_tokens = int(list_lengths(examples, "input_ids").sum())
    per_source = tokens_by_source(examples)

    # GRPO prompts must fit max_length: a longer one loses its middle, like an SFT prompt.
    rl = mapped("rl", fit_prompts, Features({"prompt": Value("string"), "truncated": Value("bool")}),
                keep=tuple(c for c in rl_rows.column_names if c != "prompt"), max_length=length)

    OUT.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(OUT / "tokenizer")
    write_table(blocks, OUT / "pretrain")
    write_table(val_blocks, OUT / "pretrain_val")
    write_table(packed, OUT / "sft")
    write_table(rl.select_columns(rl_rows.column_names), OUT / "rl")
    write_json(OUT / "pretrain_sources.json", tokens_by_source(docs))  # for the training facts
    write_json(OUT / "sft_sources.json", per_source)
    write_json(Path("metrics/tokenize.json"), {
        "vocab_size": len(tokenizer),
        "packing": p.tokenize.packing and not seq2seq,
        "pretrain": {"rows": len(blocks), "tokens": pretrain_tokens, "dropped_tokens": dropped_tail,
                     "val_blocks": len(val_blocks), "packing_efficiency": pretrain_tokens / (len(blocks) * length)},
        "sft": {"examples": len(examples), "tokens": sft_tokens, "rows": len(packed),
                "truncated": int(int_column(examples, "truncated").sum()),
                "completion_tokens": int(int_column(examples, "completion_tokens").sum()),
                "packing_efficiency": sft_tokens / (len(packed) * length),
                "sources": {name: {"tokens": n, "share": n / sft_tokens} for name, n in per_source.items()}},
        "rl": {"prompts": len(rl), "truncated": int(int_column(rl, "truncated").sum())},
    })
    shares = {name: n / sft_tokens for name, n in sorted(per_source.items())}  # the mixture actually trained on
    write_json(Path("metrics/sft_shares.json"), shares)  # a top-level metric: a column per source in `dvc exp show`
    write_json(Path("metrics/sft_mixture.json"),  # the same, as the rows of `dvc plots diff`'s bars
               [{"source": name, "share": share} for name, share in shares.items()])
    print(f"{len(blocks)} pretraining rows, {len(examples)} SFT examples in {len(packed)} rows "
          f"({sft_tokens / (len(packed) * length):.3f} real tokens), {len(rl)} RL prompts")


if __name__ == "__main__":
    run_stage(main)
