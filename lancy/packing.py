"""Packing token sequences into fixed-size rows, and the collators that batch packed rows.

With `tokenize.packing: false` every document or example is a row of its own instead, padded per batch.

Pretraining: documents are concatenated (EOS between them) and cut into `max_length` blocks.
SFT: each prompt + completion is one example with loss on the completion only; examples are packed
best-fit-decreasing into `max_length` bins whose position_ids restart at every example. `best_fit_decreasing`
makes exactly the bins of TRL's `pack_dataset(strategy="bfd")` (tests/test_packing.py compares them), without
importing TRL, whose data module loads torch and transformers' model code: ten seconds of every tokenize run
on 2 CPU cores.

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
from bisect import bisect_left, insort
from collections import defaultdict, deque
from itertools import pairwise

import numpy as np

# The lancy.tables helpers are imported where used: bench/gpu_sft.py loads this file alone, on GPU machines
# without datasets (which the lancy package imports).

IGNORE = -100
BLOCKS_PER_RANGE = 8192  # pretraining blocks cut per task (2M tokens at max_length 256)
PACK_EXAMPLES = 50_000  # SFT examples packed together: BFD's bins are filled within each range


def token_features(*columns: str):
    """Features of token-id columns (int32: any vocabulary fits, half the bytes of int64)."""
    from datasets import Features, List, Value

    return Features({column: List(Value("int32")) for column in columns})


def encode_docs(batch: dict, tokenizer, eos_id: int) -> dict:
    """Batched-map function: each document's token ids followed by EOS.

    The fast tokenizer's own `encode_batch` (what `tokenizer(texts)` runs, without building a BatchEncoding):
    the bulk of a corpus goes through here."""
    encodings = tokenizer.backend_tokenizer.encode_batch(batch["text"], add_special_tokens=False)
    return {"input_ids": [[*encoding.ids, eos_id] for encoding in encodings]}


def pack_blocks(docs, block_size: int, num_proc: int = 1):
    """(Dataset of `block_size`-token blocks, tokens dropped from the incomplete last block) of a Dataset of
    documents' token ids (EOS included): the documents end to end, cut every block_size tokens.

    Blocks are cut in ranges of BLOCKS_PER_RANGE, each read straight from the token offsets of the memory-mapped
    documents, so the result is the same for any num_proc and no process holds more than one range.
    """
    from lancy.tables import list_lengths, map_ranges

    total = int(list_lengths(docs, "input_ids").sum())
    count = total // block_size
    blocks = map_ranges(count, BLOCKS_PER_RANGE, _blocks, num_proc, token_features("input_ids"),
                        docs=docs.select_columns(["input_ids"]), block_size=block_size)
    return blocks, total - count * block_size


def _blocks(start: int, stop: int, docs, block_size: int):
    import pyarrow as pa

    from lancy.tables import flat_values

    values = flat_values(docs, "input_ids").slice(start * block_size, (stop - start) * block_size).combine_chunks()
    offsets = pa.array(np.arange(0, len(values) + 1, block_size, dtype=np.int32))
    return pa.table({"input_ids": pa.ListArray.from_arrays(offsets, values)})


def document_rows(docs, max_length: int, num_proc: int = 1):
    """Unpacked pretraining rows: each document (with EOS) alone, cut at max_length; and the tokens cut."""
    from lancy.tables import list_lengths, processes

    lengths = list_lengths(docs, "input_ids")
    rows = docs.map(_cut, batched=True, fn_kwargs={"max_length": max_length}, remove_columns=docs.column_names,
                    features=token_features("input_ids"), num_proc=processes(num_proc, len(docs)))
    return rows, int(np.maximum(lengths[lengths > 1] - max_length, 0).sum())


def _cut(batch: dict, max_length: int) -> dict:
    return {"input_ids": [ids[:max_length] for ids in batch["input_ids"] if len(ids) > 1]}  # 1: EOS alone


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


def encode_sft(batch: dict, tokenizer, max_length: int) -> dict:
    """Batched-map function: the SFT example of each task record (prompt, then completion + EOS) and whether it
    had to be truncated.

    Prompt and completion are tokenized apart: the model sees at training time exactly the prompt tokens it is
    given at evaluation time.
    """
    encode = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    out = {"input_ids": [], "labels": [], "truncated": [], "completion_tokens": []}
    for prompt_ids, completion_ids in zip(encode(batch["prompt"]), encode(batch["completion"]), strict=True):
        example, truncated = sft_example(prompt_ids, completion_ids + [tokenizer.eos_token_id], max_length)
        out["input_ids"].append(example["input_ids"])
        out["labels"].append(example["labels"])
        out["truncated"].append(truncated)
        out["completion_tokens"].append(sum(label != IGNORE for label in example["labels"]))
    return out


def seq2seq_examples(batch: dict, tokenizer, max_length: int) -> dict:
    """Batched-map function: encoder-decoder SFT examples, the prompt as the encoder input and the completion
    + EOS as the labels."""
    encode = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    out = {"input_ids": [], "labels": [], "truncated": [], "completion_tokens": []}
    for prompt_ids, completion_ids in zip(encode(batch["prompt"]), encode([c.strip() for c in batch["completion"]]),
                                          strict=True):
        out["input_ids"].append(fit_prompt(prompt_ids, max_length))
        out["labels"].append((completion_ids + [tokenizer.eos_token_id])[:max_length])
        out["truncated"].append(len(prompt_ids) > max_length or len(completion_ids) + 1 > max_length)
        out["completion_tokens"].append(len(out["labels"][-1]))
    return out


def fit_prompts(batch: dict, tokenizer, max_length: int) -> dict:
    """Batched-map function: prompts longer than max_length tokens lose their middle (as `fit_prompt`)."""
    prompts, truncated = [], []
    for prompt, ids in zip(batch["prompt"], tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"],
                           strict=True):
        prompts.append(tokenizer.decode(fit_prompt(ids, max_length)) if len(ids) > max_length else prompt)
        truncated.append(len(ids) > max_length)
    return {"prompt": prompts, "truncated": truncated}


def pack_sft(examples, max_length: int, num_proc: int = 1):
    """Best-fit-decreasing packing into bins of max_length (examples longer than that are truncated), with
    position_ids restarting per example, over ranges of PACK_EXAMPLES examples: the same for any num_proc,
    bounded memory per process, and one part-empty bin per range at most."""
    from lancy.tables import map_ranges

    return map_ranges(len(examples), PACK_EXAMPLES, _pack_range, num_proc,
                      token_features("input_ids", "labels", "position_ids"),
                      examples=examples.select_columns(["input_ids", "labels"]), max_length=max_length)


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of example indices: longest first (ties in index order), each into the open bin with the least room
    that fits it, the earliest opened of those, else a new bin; empty examples are dropped, longer ones count
    as `capacity`. The bins and their order are those of TRL's `pack_dataset(strategy="bfd")`."""
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: -min(lengths[i], capacity))
    rooms: list[int] = []  # the free room of open bins, sorted, each value once
    bins_with_room: dict[int, deque] = defaultdict(deque)
    bins: list[list[int]] = []
    for i in order:
        length = min(lengths[i], capacity)
        k = bisect_left(rooms, length)
        if k < len(rooms):
            room = rooms[k]
            chosen = bins_with_room[room].popleft()
            if not bins_with_room[room]:
                del rooms[k]
        else:
            room, chosen = capacity, []
            bins.append(chosen)
        chosen.append(i)
        room -= length
        if room > 0:
            if not bins_with_room[room]:
                insort(rooms, room)
            bins_with_room[room].append(chosen)
    return bins


def _pack_range(start: int, stop: int, examples, max_length: int) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = examples.with_format("arrow")[start:stop]
    lengths = np.minimum(pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False), max_length)
    bins = best_fit_decreasing(lengths.tolist(), max_length)
    if not bins:  # only empty examples
        return {"input_ids": [], "labels": [], "position_ids": []}
    order = pa.array([i for chosen in bins for i in chosen], pa.int64())
    bin_lengths = [lengths[chosen] for chosen in bins]
    ends = np.cumsum([row.sum() for row in bin_lengths])[:-1]
    packed = {name: np.split(pc.list_flatten(pc.list_slice(table[name], 0, max_length).take(order)).to_numpy(), ends)
              for name in ("input_ids", "labels")}
    return {**packed, "position_ids": _position_ids(bin_lengths)}


def _position_ids(seq_lengths: list[list[int]]) -> list[np.ndarray]:
    """0, 1, ... restarting at every example of each packed row (vectorized over a row's examples)."""
    rows = []
    for lengths in seq_lengths:
        lengths = np.asarray(lengths)
        rows.append(np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    return rows


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
