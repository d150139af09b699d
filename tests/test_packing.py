"""lancy.packing: pretraining blocks and rows, SFT examples, best-fit packing (the same for any number of
processes), and packed == unpacked logits."""
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, List, Value
from transformers import LlamaConfig, LlamaForCausalLM

import lancy.attention
import lancy.models
import lancy.packing
import lancy.tables
from lancy.attention import TORCH_FLASH, register_flash, torch_kernels, unregister_flash
from lancy.errors import LancyError
from lancy.packing import (
    IGNORE,
    FlattenedCollator,
    PackedCollator,
    _position_ids,
    document_rows,
    pack_blocks,
    pack_sft,
    packed_collator,
    sft_example,
)

# --- pack_blocks ------------------------------------------------------------------------------------------------


def _docs(docs: list[list[int]], eos: int = 0) -> Dataset:
    """Documents as the tokenize stage hands them over: token ids with EOS appended (`encode_docs`)."""
    return Dataset.from_dict({"input_ids": [[*doc, eos] for doc in docs]})


def test_pack_blocks_shapes_eos_and_dropped_tail():
    blocks, dropped = pack_blocks(_docs([[1, 2, 3], [4, 5], [6, 7, 8, 9]]), block_size=4)
    # stream: 1 2 3 0 | 4 5 0 6 | 7 8 9 0  (12 tokens = 3 full blocks)
    assert blocks.features["input_ids"] == List(Value("int32"))
    assert blocks["input_ids"] == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    assert dropped == 0


def test_pack_blocks_drops_incomplete_tail():
    blocks, dropped = pack_blocks(_docs([[1, 2, 3], [4, 5]]), block_size=3)
    assert blocks["input_ids"] == [[1, 2, 3], [0, 4, 5]]
    assert dropped == 1  # the final EOS


def test_pack_blocks_too_little_text():
    blocks, dropped = pack_blocks(_docs([[1, 2]]), block_size=8)
    assert len(blocks) == 0 and blocks.column_names == ["input_ids"] and dropped == 3


def _random_docs(seed: int, count: int = 50) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(1, 100) for _ in range(rng.randrange(1, 40))] for _ in range(count)]


def test_pack_blocks_random_docs_keep_the_stream():
    docs = _random_docs(0)
    blocks, dropped = pack_blocks(_docs(docs), block_size=16)
    stream = [t for doc in docs for t in [*doc, 0]]
    assert len(blocks) * 16 + dropped == len(stream) and dropped < 16
    assert np.asarray(blocks["input_ids"]).reshape(-1).tolist() == stream[: len(blocks) * 16]


@pytest.fixture
def worker_processes(monkeypatch, tmp_path):
    """Small tables go to worker processes, and map_ranges records the process that builds each range: returns
    the set of those process ids."""
    monkeypatch.setattr(lancy.tables, "MIN_ROWS_PER_PROCESS", 1)
    build = lancy.tables._range

    def recorded(batch, **kwargs):
        (tmp_path / f"pid-{os.getpid()}").touch()
        return build(batch, **kwargs)

    monkeypatch.setattr(lancy.tables, "_range", recorded)
    return lambda: {path.name for path in tmp_path.glob("pid-*")}


def test_pack_blocks_same_rows_for_any_number_of_processes(worker_processes, monkeypatch):
    """Blocks are cut in fixed ranges: one process or two, the rows are the stream cut every block_size."""
    monkeypatch.setattr(lancy.packing, "BLOCKS_PER_RANGE", 3)
    docs = _random_docs(1, count=60)
    stream = np.concatenate([[*doc, 0] for doc in docs])
    expected = stream[: len(stream) // 16 * 16].reshape(-1, 16)
    assert len(expected) > 3 * 4  # several ranges per process
    one, dropped_one = pack_blocks(_docs(docs), 16, num_proc=1)
    assert len(worker_processes()) == 1
    two, dropped_two = pack_blocks(_docs(docs), 16, num_proc=2)
    assert len(worker_processes()) == 3  # two workers beside this process
    assert one["input_ids"] == two["input_ids"] == expected.tolist()
    assert dropped_one == dropped_two == len(stream) % 16


# --- document_rows ----------------------------------------------------------------------------------------------


def test_document_rows_cut_each_document_and_count_the_cut():
    rows, cut = document_rows(_docs([[1, 2, 3, 4, 5, 6], [], [7, 8]]), max_length=4)
    assert rows["input_ids"] == [[1, 2, 3, 4], [7, 8, 0]]  # an empty document (EOS alone) is no row
    assert cut == 3  # 5, 6 and the EOS of the first document


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
    return examples, pack_sft(Dataset.from_list(examples), max_length=64)


def test_pack_sft_columns_and_row_lengths(numbered):
    _, packed = numbered
    assert set(packed.column_names) == {"input_ids", "labels", "position_ids"}
    assert all(feature == List(Value("int32")) for feature in packed.features.values())
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pack_sft_makes_the_bins_of_trl_pack_dataset(seed):
    """lancy's best-fit-decreasing gives exactly TRL's `pack_dataset(strategy="bfd")` rows: the same examples in
    the same bins and order, truncated the same way, empty examples dropped (many equal lengths: the ties)."""
    from trl import pack_dataset

    rng = random.Random(seed)
    lengths = [rng.choice([0, 1, 7, 7, 7, 20, 33, 64, 70, rng.randrange(1, 90)]) for _ in range(300)]
    examples = _numbered_examples(lengths, [min(2, n) for n in lengths])
    ours = pack_sft(Dataset.from_list(examples), max_length=64).to_list()
    theirs = pack_dataset(Dataset.from_list(examples), 64, strategy="bfd", map_kwargs={"batch_size": 300})
    assert [row["input_ids"] for row in ours] == theirs["input_ids"]
    assert [row["labels"] for row in ours] == theirs["labels"]
    assert [row["position_ids"] for row in ours] == [list(p) for p in _position_ids(theirs["seq_lengths"])]


def test_pack_sft_is_efficient_for_many_short_examples():
    rng = random.Random(1)
    lengths = [rng.randrange(4, 48) for _ in range(600)]
    examples = _numbered_examples(lengths, [2] * len(lengths))
    packed = pack_sft(Dataset.from_list(examples), max_length=128)
    tokens = sum(len(row["input_ids"]) for row in packed)
    assert tokens == sum(lengths)
    assert tokens / (len(packed) * 128) > 0.9


def test_pack_sft_same_rows_for_any_number_of_processes(worker_processes, monkeypatch, numbered):
    """Examples are packed in fixed ranges: one process or two, the same rows, every example in one of them once."""
    monkeypatch.setattr(lancy.packing, "PACK_EXAMPLES", 7)
    examples, _ = numbered
    one = pack_sft(Dataset.from_list(examples), max_length=64, num_proc=1)
    assert len(worker_processes()) == 1
    two = pack_sft(Dataset.from_list(examples), max_length=64, num_proc=2)
    assert len(worker_processes()) == 3  # two workers beside this process
    assert one.to_list() == two.to_list()
    found = [row["input_ids"][s:e] for row in two for s, e in _segments(row)]
    assert sorted(found) == sorted(e["input_ids"] for e in examples)


def test_pack_sft_packs_each_range_best_fit(monkeypatch):
    """Over several ranges, bins hold the examples of one range, and each range is packed best-fit-decreasing:
    as many rows as its tokens need, or one more."""
    monkeypatch.setattr(lancy.packing, "PACK_EXAMPLES", 100)
    rng = random.Random(1)
    lengths = [rng.randrange(4, 48) for _ in range(600)]
    packed = pack_sft(Dataset.from_list(_numbered_examples(lengths, [2] * len(lengths))), max_length=128)
    ranges = [{(token // 1000 - 1) // 100 for token in row["input_ids"]} for row in packed]
    assert all(len(r) == 1 for r in ranges)  # no row mixes two ranges
    ranges = [r.pop() for r in ranges]
    assert ranges == sorted(ranges) and set(ranges) == set(range(6))  # in order
    for r in range(6):
        tokens = sum(lengths[100 * r : 100 * (r + 1)])
        assert -(-tokens // 128) <= ranges.count(r) <= -(-tokens // 128) + 1
    assert sum(lengths) / (len(packed) * 128) > 0.9


def test_packed_collator_pads_as_one_more_sequence():
    rows = [
        {"input_ids": [5, 6, 7, 8], "labels": [IGNORE, 6, 7, 8], "position_ids": [0, 1, 0, 1]},
        {"input_ids": [9, 10], "labels": [IGNORE, 10], "position_ids": [0, 1]},
    ]
    batch = PackedCollator(pad_id=3)(rows)
    assert set(batch) == {"input_ids", "labels", "position_ids", "use_cache"}  # no attention_mask
    assert batch.pop("use_cache") is False
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 3, 3]]
    # 7 starts an example: 6 ends the one before and must not learn to predict it.
    assert batch["labels"].tolist() == [[IGNORE, 6, IGNORE, 8], [IGNORE, 10, IGNORE, IGNORE]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1], [0, 1, 0, 1]]
    assert all(t.dtype == torch.int64 for t in batch.values())


def test_flattened_collator_one_padding_free_row_with_flash_kwargs():
    rows = [
        {"input_ids": [5, 6, 7, 8], "labels": [5, 6, 7, 8], "position_ids": [0, 1, 0, 1]},
        {"input_ids": [9, 10, 11], "labels": [IGNORE, 10, 11], "position_ids": [0, 1, 2]},
    ]
    batch = FlattenedCollator()(rows)
    assert batch.pop("use_cache") is False
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 0, 1, 2]]
    assert batch["labels"].tolist() == [[IGNORE, 6, IGNORE, 8, IGNORE, 10, 11]]  # no label crosses a boundary
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == [0, 2, 4, 7]
    assert batch["max_length_q"] == batch["max_length_k"] == 3


def test_flattened_collator_keeps_pretraining_blocks_apart():
    """Blocks have no labels and no position_ids: each one is a sequence, trained on every token but its first."""
    batch = FlattenedCollator()([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5, 6]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6]]
    assert batch["labels"].tolist() == [[IGNORE, 2, 3, IGNORE, 5, 6]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 6]


@pytest.mark.parametrize("attention, flattened", [
    ("sdpa", False), ("eager", False), ("flash_attention_2", True), ("flash_attention_3", True),
    ("kernels-community/flash-attn2", True), ("paged|flash_attention_2", True),
])
def test_collator_follows_the_models_attention(attention, flattened):
    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation=attention))
    assert isinstance(packed_collator(model, pad_id=0), FlattenedCollator if flattened else PackedCollator)


# --- packed logits == unpacked logits ----------------------------------------------------------------------------

VOCAB, PAD = 96, 0
# (tokens, prompt tokens) of each example; (8, 0) is trained on every token, its first one included.
LENGTHS = [(30, 24), (20, 15), (17, 10), (12, 9), (9, 6), (8, 0), (5, 3)]


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
def packed_rows(sft_examples):
    packed = list(pack_sft(Dataset.from_list(sft_examples), max_length=64))
    assert len(packed) < len(sft_examples)  # several examples share a row
    assert any(len(_segments(row)) > 1 for row in packed)
    all_labelled = sft_examples[LENGTHS.index((8, 0))]["input_ids"]
    assert any(row["input_ids"][s:e] == all_labelled  # it follows another example in its row
               for row in packed for s, e in _segments(row)[1:])
    return packed


@pytest.fixture(scope="module")
def packed_batch(packed_rows):
    """The row-wise batch: what sdpa and eager get (and what flash attention got before it was flattened)."""
    return PackedCollator(pad_id=PAD)(packed_rows)


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


# --- flash attention on the CPU ----------------------------------------------------------------------------------

FLASH = "recording_flash"


@pytest.fixture(scope="module")
def flash_kernel():
    """An attention implementation that takes transformers' own flash-attention path, on the CPU.

    It is registered by lancy.attention.register_flash, as TORCH_FLASH is on CUDA, the way transformers registers a
    hub flash kernel: `flash_attention_forward` in the AttentionInterface and `flash_attention_mask` in the mask
    interface, under a name holding "flash" (what `is_flash_attention_requested` looks for). Everything transformers
    decides for flash_attention_2 is then decided for it: `masking_utils` builds no mask from restarting
    position_ids (only a padding mask, and none when nothing is padded), and
    `modeling_flash_attention_utils._flash_attention_forward` picks the varlen kernel for cu_seq_lens_q/k kwargs or
    for restarting position_ids in a batch of ONE row (`_is_packed_sequence`), the dense kernel (each row one causal
    sequence) otherwise. Only the CUDA kernels that `_lazy_imports` would load are replaced, by reference kernels
    that compute causal attention per sequence and record the sequence lengths they were given: what flash attention
    keeps apart. Yields that record.
    """
    calls = []

    def attend(q, k, v, causal, scale):  # one sequence: [tokens, heads, head_dim]
        out = F.scaled_dot_product_attention(*(x.transpose(0, 1) for x in (q, k, v)), is_causal=causal, scale=scale,
                                             enable_gqa=True)
        return out.transpose(0, 1)

    def flash_fn(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False):  # [batch, tokens, heads, head_dim]
        calls.append(("dense", [q.shape[1]] * q.shape[0]))
        return torch.stack([attend(q[i], k[i], v[i], causal, softmax_scale) for i in range(q.shape[0])])

    def flash_varlen_fn(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                        softmax_scale=None, causal=False):  # [all tokens, heads, head_dim]
        assert torch.equal(cu_seqlens_q, cu_seqlens_k)
        bounds = cu_seqlens_q.tolist()
        calls.append(("varlen", [end - start for start, end in zip(bounds, bounds[1:], strict=False)]))
        return torch.cat([attend(q[s:e], k[s:e], v[s:e], causal, softmax_scale)
                          for s, e in zip(bounds, bounds[1:], strict=False)])

    register_flash(FLASH, flash_fn, flash_varlen_fn)  # the registration TORCH_FLASH goes through
    yield calls
    unregister_flash(FLASH)


@pytest.mark.parametrize("attention", ["sdpa", "eager", FLASH])
def test_packed_logits_equal_unpacked(attention, sft_examples, packed_rows, flash_kernel):
    model = _tiny_llama(attention)
    assert model.config._attn_implementation == attention
    batch = packed_collator(model, PAD)(packed_rows)  # the collator training picks for this model
    flash_kernel.clear()
    with torch.no_grad():
        packed = model(**batch)  # as the Trainer calls it: input_ids, labels, position_ids, no mask
    if attention == FLASH:  # one padding-free row, and in every layer the kernel attends within each example
        example_lengths = [e - s for s, e in _segments({"position_ids": batch["position_ids"][0].tolist()})]
        assert batch["input_ids"].shape[0] == 1 and sorted(example_lengths) == sorted(n for n, _ in LENGTHS)
        assert flash_kernel == [("varlen", example_lengths)] * model.config.num_hidden_layers
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([e["input_ids"]])).logits[0] for e in sft_examples]

    completion_losses = []
    for i, b, start in _locate(batch, sft_examples):
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


def test_flash_attention_mixes_the_examples_of_row_wise_batches(sft_examples, packed_batch, flash_kernel):
    """Why flash attention gets the flattened collator: the row-wise batch sdpa gets reaches its kernel as whole
    rows (transformers reads position_ids restarts only in a batch of one row), and an example sees the ones
    packed before it."""
    model = _tiny_llama(FLASH)
    rows, width = packed_batch["input_ids"].shape
    assert rows > 1
    flash_kernel.clear()
    with torch.no_grad():
        packed = model(**packed_batch).logits
    assert flash_kernel == [("dense", [width] * rows)] * model.config.num_hidden_layers
    i, b, start = next((i, b, s) for i, b, s in _locate(packed_batch, sft_examples) if s > 0)
    n = len(sft_examples[i]["input_ids"])
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([sft_examples[i]["input_ids"]])).logits[0]
    assert (packed[b, start : start + n] - alone).abs().max() > 1e-2


def test_flash_attention_keeps_flattened_pretraining_blocks_apart(flash_kernel):
    """Pretraining blocks flattened into one row: each block attends within itself and its first token is no
    target, so the loss is the row-wise batch's under sdpa, where every block is a row of its own."""
    generator = torch.Generator().manual_seed(1)
    blocks = [{"input_ids": torch.randint(1, VOCAB, (16,), generator=generator).tolist()} for _ in range(3)]
    model = _tiny_llama(FLASH)
    flat = packed_collator(model, PAD)(blocks)
    assert flat["input_ids"].shape == (1, 48)
    flash_kernel.clear()
    with torch.no_grad():
        loss = model(**flat).loss
        row_wise = _tiny_llama("sdpa")(**PackedCollator(PAD)(blocks)).loss
    assert flash_kernel == [("varlen", [16, 16, 16])] * model.config.num_hidden_layers
    torch.testing.assert_close(loss, row_wise, atol=1e-5, rtol=0)


def reference_varlen_attn(calls):
    """A CPU stand-in with torch.nn.attention.varlen.varlen_attn's signature: causal attention per sequence."""
    def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                    window_size=(-1, -1), enable_gqa=False, seqused_k=None, block_table=None, num_splits=None):
        assert cu_seq_q.dtype == torch.int32 and torch.equal(cu_seq_q, cu_seq_k) and window_size == (-1, 0)
        bounds = cu_seq_q.tolist()
        calls.append([end - start for start, end in zip(bounds, bounds[1:], strict=False)])
        return torch.cat([F.scaled_dot_product_attention(*(x[s:e].transpose(0, 1) for x in (query, key, value)),
                                                         is_causal=True, scale=scale, enable_gqa=enable_gqa)
                          .transpose(0, 1) for s, e in zip(bounds, bounds[1:], strict=False)])
    return varlen_attn


def test_torch_flash_kernels_keep_packed_examples_apart(sft_examples, packed_rows):
    """TORCH_FLASH's own kernel wrappers (lancy.attention.torch_kernels: argument mapping, causal window, int32
    boundaries) through the registration it uses on CUDA, with a CPU stand-in for varlen_attn: packed logits
    equal each example's alone under sdpa."""
    calls, name = [], "torch_flash_on_cpu"
    register_flash(name, *torch_kernels(reference_varlen_attn(calls)))
    try:
        model = _tiny_llama(name)
        batch = packed_collator(model, PAD)(packed_rows)
        with torch.no_grad():
            packed = model(**batch).logits[0]
            sdpa = _tiny_llama("sdpa")
            alone = [sdpa(input_ids=torch.tensor([e["input_ids"]])).logits[0] for e in sft_examples]
    finally:
        unregister_flash(name)
    lengths = [e - s for s, e in _segments({"position_ids": batch["position_ids"][0].tolist()})]
    assert calls == [lengths] * model.config.num_hidden_layers
    start = 0
    for length in lengths:  # the flattened row holds the examples in the packed rows' order
        i = next(i for i, e in enumerate(sft_examples)
                 if e["input_ids"] == batch["input_ids"][0, start : start + length].tolist())
        torch.testing.assert_close(packed[start : start + length], alone[i], atol=1e-4, rtol=0)
        start += length


@pytest.mark.parametrize(
    ("flash_attn", "varlen", "padding_free", "expected"),
    [
        (True, True, True, "flash_attention_2"),
        (False, True, True, TORCH_FLASH),
        (False, True, False, "sdpa"),  # pretraining blocks and generation: sdpa's own flash kernel
        (False, False, True, "sdpa"),
    ],
)
def test_auto_attention_on_cuda(flash_attn, varlen, padding_free, expected, monkeypatch):
    monkeypatch.setattr(lancy.models, "device_and_dtype", lambda: ("cuda", torch.bfloat16))
    monkeypatch.setattr(lancy.attention, "flash_attn_installed", lambda: flash_attn)
    monkeypatch.setattr(lancy.attention, "torch_flash_available", lambda: varlen)
    monkeypatch.setattr(lancy.attention, "register_torch_flash", lambda: TORCH_FLASH)
    assert lancy.models.attention_implementation("auto", padding_free) == expected


def test_torch_flash_where_it_cannot_run_is_a_clear_error():
    with pytest.raises(LancyError, match="`model.attention` is torch_flash, which needs CUDA"):
        lancy.models.attention_implementation(TORCH_FLASH)


# --- the fused LM head: only the labelled positions --------------------------------------------------------------

@pytest.fixture
def head_rows(monkeypatch):
    """The number of positions each call of TRL's fused LM head projects through the head."""
    import trl.trainer.utils as trl_utils
    from trl.kernels.chunked_logprob import _use_triton

    rows, function = [], trl_utils._ChunkedLogProbFunction

    class Recording(function):
        @staticmethod
        def forward(ctx, hidden_states, *args):
            rows.append(hidden_states.shape[0])
            return function.forward(ctx, hidden_states, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Recording)
    monkeypatch.setattr(trl_utils, "_use_triton", _use_triton)  # TRL's own, and again TRL's after the test
    return rows


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("attention", ["sdpa", FLASH])
def test_fused_head_loss_and_gradients_equal_the_models_own(attention, lora, sft_examples, packed_rows, flash_kernel,
                                                           head_rows):
    """SFT's loss through the fused head (lancy.training.fused_lm_head): on the CPU, only the positions whose next
    token is labelled reach the head, and the loss and every gradient are the model's own on the packed batch."""
    from types import SimpleNamespace as Lora

    from lancy.models import apply_lora
    from lancy.training import fused_lm_head

    lora_params = Lora(enabled=lora, r=4, alpha=8, dropout=0.0, target_modules="all-linear", quantize="none")
    own, fused = _tiny_llama(attention).train(), _tiny_llama(attention).train()
    fused_lm_head(fused)
    adapted = []
    for model in (own, fused):
        torch.manual_seed(1)  # the same adapters on both
        adapted.append(apply_lora(model, lora_params))
    own, fused = adapted
    batch = packed_collator(own, PAD)(packed_rows)
    labelled = int((batch["labels"][:, 1:] != IGNORE).sum())

    own_loss = own(**batch).loss
    fused_loss = fused(**batch, fused_lm_head=True).loss
    assert head_rows == [labelled] and labelled < batch["labels"].numel() / 2
    torch.testing.assert_close(fused_loss, own_loss, atol=1e-5, rtol=0)
    own_loss.backward()
    fused_loss.backward()
    trained = [(name, p) for name, p in own.named_parameters() if p.requires_grad]
    assert trained and len(trained) == sum(p.requires_grad for p in fused.parameters())
    for (name, p), q in zip(trained, (q for q in fused.parameters() if q.requires_grad), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_without_lancys_setting_trl_scores_every_position_on_the_cpu(packed_rows, head_rows):
    """What `score_labelled_positions_only` changes: TRL alone projects the prompts' positions too on the CPU."""
    from trl.trainer.utils import add_fused_lm_head

    model = _tiny_llama("sdpa")
    add_fused_lm_head(model)
    batch = packed_collator(model, PAD)(packed_rows)
    with torch.no_grad():
        model(**batch, fused_lm_head=True)
    rows, width = batch["input_ids"].shape
    assert head_rows == [rows * (width - 1)]


# --- the chunked loss of pretraining: PyTorch's linear cross-entropy -------------------------------------------

@pytest.fixture
def chunked_rows(monkeypatch):
    """The number of positions each call of PyTorch's chunked linear cross-entropy gets."""
    rows, function = [], F.linear_cross_entropy

    def recording(hidden, *args, options=None, **kwargs):
        assert options is not None  # the chunked path, not the reference one
        rows.append(hidden.shape[0])
        return function(hidden, *args, options=options, **kwargs)

    monkeypatch.setattr(F, "linear_cross_entropy", recording)
    return rows


def _blocks(count: int = 4, width: int = 64) -> list[dict]:
    """Pretraining blocks: every token labelled, no position_ids."""
    generator = torch.Generator().manual_seed(2)
    return [{"input_ids": torch.randint(1, VOCAB, (width,), generator=generator).tolist()} for _ in range(count)]


@pytest.mark.parametrize("items", [None, 150])
@pytest.mark.parametrize("rows", ["blocks", "sft"])
@pytest.mark.parametrize("attention", ["sdpa", FLASH])
def test_chunked_loss_and_gradients_equal_the_models_own(attention, rows, items, packed_rows, flash_kernel,
                                                         chunked_rows):
    """Pretraining's loss through lancy.training.chunked_lm_loss: only the labelled positions reach PyTorch's
    chunked linear cross-entropy, no logits come back, and the loss (the mean, or the sum over the Trainer's
    num_items_in_batch) and every gradient are the model's own."""
    from lancy.training import chunked_lm_loss

    own, chunked = _tiny_llama(attention).train(), _tiny_llama(attention).train()
    assert chunked_lm_loss(chunked)
    batch = packed_collator(own, PAD)(_blocks() if rows == "blocks" else packed_rows)
    extra = {} if items is None else {"num_items_in_batch": torch.tensor(items)}
    own_loss = own(**batch, **extra).loss
    output = chunked(**batch, **extra)
    assert chunked_rows == [int((batch["labels"][:, 1:] != IGNORE).sum())] and output.logits is None
    torch.testing.assert_close(output.loss, own_loss, atol=1e-5, rtol=0)
    own_loss.backward()
    output.loss.backward()
    for (name, p), q in zip(own.named_parameters(), chunked.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_chunked_loss_leaves_evaluation_and_generation_to_the_model(chunked_rows):
    """Without gradients or without labels, the forward pass is the model's own, logits included."""
    from lancy.training import chunked_lm_loss

    own, chunked = _tiny_llama("sdpa"), _tiny_llama("sdpa")
    chunked_lm_loss(chunked)
    batch = packed_collator(own, PAD)(_blocks())
    with torch.no_grad():
        expected, evaluated = own(**batch), chunked(**batch)
    torch.testing.assert_close(evaluated.logits, expected.logits)
    assert evaluated.loss == expected.loss
    labels = batch.pop("labels")
    assert chunked(**batch).logits.shape == (*labels.shape, VOCAB)
    prompt = torch.tensor([[5, 6, 7]])
    assert torch.equal(chunked.generate(prompt, max_new_tokens=4, do_sample=False),
                       own.generate(prompt, max_new_tokens=4, do_sample=False))
    assert chunked_rows == []


def test_chunked_loss_trains_the_trainers_weights_with_gradient_accumulation(tmp_path):
    """Two SGD steps of 2 accumulated batches each through the Trainer, the batches with different numbers of
    labelled tokens: the same weights with the chunked loss as with the model's own (the Trainer hands the
    forward num_items_in_batch; a mean per batch would weigh their tokens differently)."""
    from transformers import Trainer, TrainingArguments

    from lancy.training import chunked_lm_loss

    rows = [{**row, "labels": [IGNORE] * (6 * i) + row["input_ids"][6 * i:]} for i, row in enumerate(_blocks(8))]
    weights = []
    for chunked in (False, True):
        model = _tiny_llama("sdpa").train()
        if chunked:
            assert chunked_lm_loss(model)
        args = TrainingArguments(output_dir=str(tmp_path / str(chunked)), max_steps=2, per_device_train_batch_size=2,
                                 gradient_accumulation_steps=2, optim="sgd", learning_rate=0.5,
                                 lr_scheduler_type="constant", use_cpu=True, report_to="none", save_strategy="no",
                                 disable_tqdm=True, seed=0, data_seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          data_collator=PackedCollator(PAD))
        assert trainer.model_accepts_loss_kwargs
        trainer.train()
        weights.append([p.detach().clone() for p in model.parameters()])
    initial = list(_tiny_llama("sdpa").parameters())
    for own, chunked, before in zip(*weights, initial, strict=True):
        assert not torch.equal(own, before)
        torch.testing.assert_close(chunked, own, atol=1e-6, rtol=1e-5)

