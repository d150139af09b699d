"""Packing token sequences into fixed-size rows, and the collators that batch packed rows.

With `tokenize.packing: false` every document or example is a row of its own instead, padded per batch.

Pretraining: documents are concatenated (EOS between them) and cut into `max_length` blocks.
SFT: each prompt + completion is one example with loss on the completion only; examples are packed
best-fit-decreasing (TRL's `pack_dataset`) into `max_length` bins whose position_ids restart at every
example.

Keeping packed examples apart depends on the attention implementation (`packed_collator` picks the collator):
- sdpa and eager: with no attention mask, transformers turns restarting position_ids into a block-diagonal
  causal mask in every row of a batch, so `PackedCollator` sends the rows as they are. That holds only
  without a KV cache (with one, transformers ignores the restarts), so its batches carry `use_cache=False`.
- flash attention (flash_attention_2/3, hub flash kernels, paged variants) and any other: transformers
  separates restarting position_ids only in a batch of ONE row (`_is_packed_sequence`); in a batch of several
  rows each packed example would attend to the examples before it. `FlattenedCollator` lays the batch's
  examples side by side in one padding-free row with the `cu_seq_lens_q/k` boundaries flash attention uses.
tests/test_packing.py checks the logits of both against each example run alone.
"""
from itertools import pairwise

import numpy as np

IGNORE = -100


def pack_blocks(docs: list[list[int]], block_size: int, eos_id: int) -> tuple[np.ndarray, int]:
    """(blocks of shape [n, block_size], tokens dropped from the incomplete last block)."""
    stream = np.fromiter((t for doc in docs for t in [*doc, eos_id]), dtype=np.int64)
    n = len(stream) // block_size
    return stream[: n * block_size].reshape(n, block_size), len(stream) - n * block_size


def document_rows(docs: list[list[int]], max_length: int, eos_id: int) -> tuple[list[list[int]], int]:
    """Unpacked pretraining rows: each document (with EOS) alone, cut at max_length; and the tokens cut."""
    rows = [[*doc, eos_id][:max_length] for doc in docs if doc]
    return rows, sum(len(doc) + 1 for doc in docs if doc) - sum(map(len, rows))


def sft_example(prompt_ids: list[int], completion_ids: list[int], max_length: int) -> tuple[dict, bool]:
    """input_ids and labels (IGNORE on the prompt) fitted into max_length, and whether it was truncated.

    A long completion keeps its first half of max_length; a long prompt loses its middle, so the instruction
    at its start and the cue right before the answer ("Sentiment:") both survive.
    """
    truncated = len(prompt_ids) + len(completion_ids) > max_length
    if truncated:
        completion_ids = completion_ids[: max(max_length // 2, max_length - len(prompt_ids))]
        budget = max_length - len(completion_ids)
        head = budget // 2
        prompt_ids = prompt_ids[:head] + prompt_ids[len(prompt_ids) - (budget - head):]
    example = {"input_ids": prompt_ids + completion_ids, "labels": [IGNORE] * len(prompt_ids) + completion_ids}
    return example, truncated


def fit_prompt(prompt_ids: list[int], max_length: int) -> list[int]:
    """A prompt cut to max_length tokens the way sft_example cuts one: its middle goes."""
    return sft_example(prompt_ids, [], max_length)[0]["input_ids"]


def encode_sft(tokenizer, records: list[dict], max_length: int) -> tuple[list[dict], int]:
    """SFT examples of task records (prompt, then completion + EOS), and how many had to be truncated.

    Prompt and completion are tokenized apart, in two batched calls: the model sees at training time exactly
    the prompt tokens it is given at evaluation time.
    """
    encode = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompts = encode([r["prompt"] for r in records])
    completions = encode([r["completion"] for r in records])
    examples, truncated = [], 0
    for prompt_ids, completion_ids in zip(prompts, completions, strict=True):
        example, was_truncated = sft_example(prompt_ids, completion_ids + [tokenizer.eos_token_id], max_length)
        examples.append(example)
        truncated += was_truncated
    return examples, truncated


def seq2seq_examples(tokenizer, records: list[dict], max_length: int) -> tuple[list[dict], int]:
    """Encoder-decoder SFT examples: the prompt as the encoder input, the completion + EOS as the labels."""
    encode = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    examples, truncated = [], 0
    for prompt_ids, completion_ids in zip(encode([r["prompt"] for r in records]),
                                          encode([r["completion"].strip() for r in records]), strict=True):
        labels = (completion_ids + [tokenizer.eos_token_id])[:max_length]
        examples.append({"input_ids": fit_prompt(prompt_ids, max_length), "labels": labels})
        truncated += len(prompt_ids) > max_length or len(completion_ids) + 1 > max_length
    return examples, truncated


def pack_sft(examples: list[dict], max_length: int):
    """Best-fit-decreasing packing into bins of max_length; adds position_ids restarting per example."""
    from datasets import Dataset
    from trl import pack_dataset

    dataset = Dataset.from_dict({key: [e[key] for e in examples] for key in ("input_ids", "labels")})
    # One map batch for all rows: packing per 1000-row batch would leave a part-empty bin per batch.
    packed = pack_dataset(dataset, max_length, strategy="bfd", map_kwargs={"batch_size": len(dataset)})
    return packed.map(_position_ids, batched=True, remove_columns=["seq_lengths"])


def _position_ids(batch: dict) -> dict:
    """0, 1, ... restarting at every example of each packed row (vectorized over a row's examples)."""
    rows = []
    for lengths in batch["seq_lengths"]:
        lengths = np.asarray(lengths)
        rows.append(np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    return {"position_ids": rows}


# The attention implementations whose masks keep the packed examples of every row of a batch apart
# (transformers' masking_utils builds a block-diagonal mask from restarting position_ids, per row).
ROW_SEPARATING_ATTENTION = ("sdpa", "eager")


def packed_collator(model, pad_id: int):
    """The collator that keeps packed examples apart under the model's own attention implementation
    (`config._attn_implementation`, as loaded): rows as they are for sdpa and eager, one flattened row otherwise."""
    if model.config._attn_implementation in ROW_SEPARATING_ATTENTION:
        return PackedCollator(pad_id)
    return FlattenedCollator()


class PackedCollator:
    """Batches packed rows without an attention mask: padding becomes one more (ignored) sequence.

    The batch includes `use_cache=False`: a model config's default `use_cache=True` would make the forward
    pass build a KV cache and attend across the packed examples. The first token of every example is
    IGNORE in the labels: the token before it ends the previous example and must not learn to predict it.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        """Rows without labels are trained on every token; rows without position_ids hold one sequence each."""
        import torch

        width = max(len(row["input_ids"]) for row in rows)
        batch = {"input_ids": [], "labels": [], "position_ids": []}
        for row in rows:
            n, pad = len(row["input_ids"]), width - len(row["input_ids"])
            positions = list(row.get("position_ids") or range(n)) + list(range(pad))
            labels = list(row.get("labels") or row["input_ids"]) + [IGNORE] * pad
            batch["input_ids"].append(list(row["input_ids"]) + [self.pad_id] * pad)
            batch["labels"].append([IGNORE if p == 0 else label for p, label in zip(positions, labels, strict=True)])
            batch["position_ids"].append(positions)
        return {**{key: torch.tensor(value) for key, value in batch.items()}, "use_cache": False}


class FlattenedCollator:
    """Padding-free batches for flash attention: all the packed examples of a batch's rows in one row.

    transformers' `DataCollatorWithFlattening` builds it: position_ids restarting per example, the
    flash-attention kwargs `cu_seq_lens_q/k` and `max_length_q/k` (so the kernel attends within each example
    without reading the boundaries back from position_ids in every layer), and IGNORE as the label of every
    example's first token (the loss shifts labels across the whole row). A row without position_ids
    (a pretraining block) is one example, kept apart from the next block as a row of its own would be.
    """

    def __init__(self):
        from transformers import DataCollatorWithFlattening

        self.flatten = DataCollatorWithFlattening(return_flash_attn_kwargs=True)

    def __call__(self, rows: list[dict]) -> dict:
        return {**self.flatten([example for row in rows for example in _examples(row)]), "use_cache": False}


def _examples(row: dict) -> list[dict]:
    """The examples of a packed row, cut where its position_ids restart."""
    keys = [key for key in ("input_ids", "labels") if row.get(key) is not None]
    positions = row.get("position_ids")
    if positions is None:
        return [{key: row[key] for key in keys}]
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return [{key: row[key][start:end] for key in keys} for start, end in pairwise(starts)]
