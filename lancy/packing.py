"""Packing token sequences into fixed-size rows, and the collator that batches packed rows.

With `tokenize.packing: false` every document or example is a row of its own instead, padded per batch.

Pretraining: documents are concatenated (EOS between them) and cut into `max_length` blocks.
SFT: each prompt + completion is one example with loss on the completion only; examples are packed
best-fit-decreasing (TRL's `pack_dataset`) into `max_length` bins whose position_ids restart at every
example. With no attention mask, transformers turns restarting position_ids into a block-diagonal causal
mask, so packed examples never attend to each other (tests/test_packing.py checks the logits). That
holds only without a KV cache (with one, transformers ignores the restarts), so the collator's batches
carry `use_cache=False`.
"""
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


class PackedCollator:
    """Batches packed rows without an attention mask: padding becomes one more (ignored) sequence.

    The batch includes `use_cache=False`: a model config's default `use_cache=True` would make the forward
    pass build a KV cache and attend across the packed examples.
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
            batch["input_ids"].append(list(row["input_ids"]) + [self.pad_id] * pad)
            batch["labels"].append(list(row.get("labels") or row["input_ids"]) + [IGNORE] * pad)
            batch["position_ids"].append(list(row.get("position_ids") or range(n)) + list(range(pad)))
        return {**{key: torch.tensor(value) for key, value in batch.items()}, "use_cache": False}
