"""lancy.packing: pretraining blocks, SFT examples, best-fit packing, and packed == unpacked logits."""
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from lancy.packing import IGNORE, PackedCollator, pack_blocks, pack_sft, sft_example

# --- pack_blocks ------------------------------------------------------------------------------------------------


def test_pack_blocks_shapes_eos_and_dropped_tail():
    docs = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    blocks, dropped = pack_blocks(docs, block_size=4, eos_id=0)
    # stream: 1 2 3 0 | 4 5 0 6 | 7 8 9 0  (12 tokens = 3 full blocks)
    assert blocks.shape == (3, 4) and blocks.dtype == np.int64
    assert blocks.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    assert dropped == 0


def test_pack_blocks_drops_incomplete_tail():
    blocks, dropped = pack_blocks([[1, 2, 3], [4, 5]], block_size=3, eos_id=0)
    assert blocks.tolist() == [[1, 2, 3], [0, 4, 5]]
    assert dropped == 1  # the final EOS


def test_pack_blocks_too_little_text():
    blocks, dropped = pack_blocks([[1, 2]], block_size=8, eos_id=0)
    assert blocks.shape == (0, 8) and dropped == 3


def test_pack_blocks_random_docs_keep_the_stream():
    rng = random.Random(0)
    docs = [[rng.randrange(1, 100) for _ in range(rng.randrange(1, 40))] for _ in range(50)]
    blocks, dropped = pack_blocks(docs, block_size=16, eos_id=0)
    stream = [t for doc in docs for t in [*doc, 0]]
    assert blocks.size + dropped == len(stream) and dropped < 16
    assert blocks.reshape(-1).tolist() == stream[: blocks.size]


# --- sft_example ------------------------------------------------------------------------------------------------


def test_sft_example_labels_only_on_the_completion():
    example, truncated = sft_example([1, 2, 3], [4, 5], max_length=10)
    assert example == {"input_ids": [1, 2, 3, 4, 5], "labels": [IGNORE, IGNORE, IGNORE, 4, 5]}
    assert truncated is False


def test_sft_example_exactly_max_length_is_not_truncated():
    example, truncated = sft_example(list(range(6)), [50, 51], max_length=8)
    assert len(example["input_ids"]) == 8 and truncated is False


def test_sft_example_long_prompt_keeps_head_tail_and_completion():
    prompt = list(range(100))
    completion = [900, 901, 902]
    example, truncated = sft_example(prompt, completion, max_length=20)
    assert truncated is True
    assert len(example["input_ids"]) == 20
    # 17 prompt tokens: the first 8 (the instruction) and the last 9 (the cue right before the answer).
    assert example["input_ids"] == prompt[:8] + prompt[-9:] + completion
    assert example["labels"] == [IGNORE] * 17 + completion


def test_sft_example_long_completion_keeps_its_first_half():
    prompt, completion = list(range(30)), list(range(500, 600))
    example, truncated = sft_example(prompt, completion, max_length=20)
    assert truncated is True
    assert example["input_ids"] == prompt[:5] + prompt[-5:] + completion[:10]
    assert example["labels"] == [IGNORE] * 10 + completion[:10]


def test_sft_example_long_completion_after_short_prompt():
    prompt, completion = [1, 2, 3], list(range(500, 600))
    example, truncated = sft_example(prompt, completion, max_length=20)
    assert truncated is True
    assert example["input_ids"] == prompt + completion[:17]  # the whole short prompt survives


def test_sft_example_prompt_only_for_rl():
    example, truncated = sft_example(list(range(30)), [], max_length=10)
    assert truncated is True
    assert example["input_ids"] == [0, 1, 2, 3, 4, 25, 26, 27, 28, 29]
    assert example["labels"] == [IGNORE] * 10


# --- pack_sft ---------------------------------------------------------------------------------------------------


def _numbered_examples(lengths, prompt_lengths):
    """Example k has tokens 1000*k + position, so a token tells its example and its position in it."""
    examples = []
    for k, (n, p) in enumerate(zip(lengths, prompt_lengths, strict=True), start=1):
        ids = [1000 * k + j for j in range(n)]
        examples.append({"input_ids": ids, "labels": [IGNORE] * p + ids[p:]})
    return examples


def _segments(row):
    """Split a packed row at every position_ids restart: [(start, end), ...]."""
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["position_ids"])]
    return list(zip(starts, starts[1:], strict=False))


@pytest.fixture(scope="module")
def numbered():
    rng = random.Random(0)
    lengths = [rng.randrange(3, 60) for _ in range(80)]
    prompts = [rng.randrange(1, n) for n in lengths]
    examples = _numbered_examples(lengths, prompts)
    return examples, pack_sft(examples, max_length=64)


def test_pack_sft_columns_and_row_lengths(numbered):
    _, packed = numbered
    assert set(packed.column_names) == {"input_ids", "labels", "position_ids"}
    for row in packed:
        assert 0 < len(row["input_ids"]) <= 64
        assert len(row["labels"]) == len(row["position_ids"]) == len(row["input_ids"])


def test_pack_sft_every_example_exactly_once_and_contiguous(numbered):
    examples, packed = numbered
    found = [row["input_ids"][s:e] for row in packed for s, e in _segments(row)]
    assert sorted(found) == sorted(e["input_ids"] for e in examples)


def test_pack_sft_positions_restart_and_labels_align(numbered):
    examples, packed = numbered
    prompt_len = {k: e["labels"].count(IGNORE) for k, e in enumerate(examples, start=1)}
    for row in packed:
        for token, position, label in zip(row["input_ids"], row["position_ids"], row["labels"], strict=True):
            k, j = divmod(token, 1000)
            assert position == j  # position 0 exactly where an example starts
            assert label == (IGNORE if j < prompt_len[k] else token)


def test_pack_sft_is_efficient_for_many_short_examples():
    rng = random.Random(1)
    lengths = [rng.randrange(4, 48) for _ in range(600)]
    examples = _numbered_examples(lengths, [2] * len(lengths))
    packed = pack_sft(examples, max_length=128)
    tokens = sum(len(row["input_ids"]) for row in packed)
    assert tokens == sum(lengths)
    assert tokens / (len(packed) * 128) > 0.9


def test_packed_collator_pads_as_one_more_sequence():
    rows = [
        {"input_ids": [5, 6, 7, 8], "labels": [IGNORE, 6, 7, 8], "position_ids": [0, 1, 0, 1]},
        {"input_ids": [9, 10], "labels": [IGNORE, 10], "position_ids": [0, 1]},
    ]
    batch = PackedCollator(pad_id=3)(rows)
    assert set(batch) == {"input_ids", "labels", "position_ids", "use_cache"}  # no attention_mask
    assert batch.pop("use_cache") is False
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 3, 3]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7, 8], [IGNORE, 10, IGNORE, IGNORE]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1], [0, 1, 0, 1]]
    assert all(t.dtype == torch.int64 for t in batch.values())


# --- packed logits == unpacked logits ----------------------------------------------------------------------------

VOCAB, PAD = 96, 0
LENGTHS = [(30, 24), (20, 15), (17, 10), (12, 9), (9, 6), (5, 3)]  # (tokens, prompt tokens) of each example


def _tiny_llama(attention: str):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=PAD,
    )
    config._attn_implementation = attention
    # The config keeps its default use_cache=True: the collator's batches carry use_cache=False themselves
    # (with a KV cache, transformers does not look for packed position_ids: test_packing_needs_use_cache_off).
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def sft_examples():
    generator = torch.Generator().manual_seed(0)
    examples = []
    for n, p in LENGTHS:
        ids = torch.randint(1, VOCAB, (n,), generator=generator).tolist()
        examples.append({"input_ids": ids, "labels": [IGNORE] * p + ids[p:]})
    return examples


@pytest.fixture(scope="module")
def packed_batch(sft_examples):
    packed = pack_sft(sft_examples, max_length=64)
    assert len(packed) < len(sft_examples)  # several examples share a row
    assert any(len(_segments(row)) > 1 for row in packed)
    return PackedCollator(pad_id=PAD)(list(packed))


def _locate(batch, examples):
    """(example index, batch row, start) of every example in the collated batch."""
    places = []
    for b in range(batch["input_ids"].shape[0]):
        ids, pos = batch["input_ids"][b].tolist(), batch["position_ids"][b].tolist()
        row = {"position_ids": pos}
        for s, e in _segments(row):
            for i, example in enumerate(examples):
                if ids[s:e] == example["input_ids"]:
                    places.append((i, b, s))
    assert sorted(i for i, _, _ in places) == list(range(len(examples)))  # each example found once
    return places


def _token_losses(logits, labels):
    """Per-token next-token loss (0 where the next label is IGNORE), as the causal-LM loss computes it."""
    return F.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE, reduction="none")


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_logits_equal_unpacked(attention, sft_examples, packed_batch):
    model = _tiny_llama(attention)
    assert model.config._attn_implementation == attention
    with torch.no_grad():
        packed = model(**packed_batch)  # as the Trainer calls it: input_ids, labels, position_ids, no mask
        alone = [model(input_ids=torch.tensor([e["input_ids"]])).logits[0] for e in sft_examples]

    completion_losses = []
    for i, b, start in _locate(packed_batch, sft_examples):
        n = len(sft_examples[i]["input_ids"])
        logits = packed.logits[b, start : start + n]
        torch.testing.assert_close(logits, alone[i], atol=1e-4, rtol=0)
        labels = torch.tensor(sft_examples[i]["labels"])
        loss_packed = _token_losses(logits, labels)
        loss_alone = _token_losses(alone[i], labels)
        torch.testing.assert_close(loss_packed, loss_alone, atol=1e-4, rtol=0)
        completion_losses.append(loss_alone[labels[1:] != IGNORE])

    # The model's own loss on the packed batch is the mean loss over all completion tokens of the examples alone.
    expected = torch.cat(completion_losses).mean()
    torch.testing.assert_close(packed.loss, expected, atol=1e-4, rtol=0)


def test_negative_control_without_position_restarts(sft_examples, packed_batch):
    """The comparison above can fail: without restarting positions, the second example sees the first."""
    model = _tiny_llama("sdpa")
    places = _locate(packed_batch, sft_examples)
    i, b, start = next((i, b, s) for i, b, s in places if s > 0)  # an example that is not first in its row
    n = len(sft_examples[i]["input_ids"])
    width = packed_batch["input_ids"].shape[1]
    with torch.no_grad():
        restarted = model(input_ids=packed_batch["input_ids"][b : b + 1], use_cache=False,
                          position_ids=packed_batch["position_ids"][b : b + 1]).logits[0]
        plain = model(input_ids=packed_batch["input_ids"][b : b + 1], use_cache=False,
                      position_ids=torch.arange(width)[None]).logits[0]
        alone = model(input_ids=torch.tensor([sft_examples[i]["input_ids"]])).logits[0]
    torch.testing.assert_close(restarted[start : start + n], alone, atol=1e-4, rtol=0)
    assert (plain[start : start + n] - alone).abs().max() > 1e-2


def test_packing_needs_use_cache_off(sft_examples, packed_batch):
    """Why the collator's batches carry use_cache=False: with a cache, transformers ignores the restarts."""
    assert packed_batch["use_cache"] is False
    model = _tiny_llama("sdpa")
    places = _locate(packed_batch, sft_examples)
    i, b, start = next((i, b, s) for i, b, s in places if s > 0)
    n = len(sft_examples[i]["input_ids"])
    row = {key: packed_batch[key][b : b + 1] for key in ("input_ids", "position_ids")}
    with torch.no_grad():
        cached = model(**row, use_cache=True).logits[0]
        alone = model(input_ids=torch.tensor([sft_examples[i]["input_ids"]])).logits[0]
    assert (cached[start : start + n] - alone).abs().max() > 1e-2
