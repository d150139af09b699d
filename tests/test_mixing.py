"""lancy.mixing: weights, row allocation, the task mixture (SFT + disjoint RL) and the character-weighted corpus."""
import random

import numpy as np
import pytest
from datasets import Dataset

from lancy import mixing
from lancy.mixing import allocate, experiment_tag, normalize


def _table(rows: list[dict]) -> Dataset:
    return Dataset.from_list(rows) if rows else Dataset.from_dict({})


def sample_tasks(pools, weights, sft_rows, rl_rows, seed, upsample, rl_weights=None):
    """lancy.mixing.sample_tasks on Datasets of these records (as the mix stage builds them), the picked rows
    read back as lists."""
    tables = {name: _table([{**r, "record_chars": len(r["prompt"]) + len(r["completion"])} for r in rows])
              for name, rows in pools.items()}
    sft, rl, sft_order, rl_order, stats = mixing.sample_tasks(tables, weights, sft_rows, rl_rows, seed, upsample,
                                                              rl_weights)
    columns = [c for c in next(iter(tables.values())).column_names if c != "record_chars"]
    sft_rows, rl_rows = mixing.take(tables, sft, sft_order, columns), mixing.take(tables, rl, rl_order, columns)
    return sft_rows.to_list(), rl_rows.to_list(), stats


def sample_corpus(pools, weights, total_chars, seed, upsample):
    """lancy.mixing.sample_corpus on Datasets of these texts, the picked documents read back as a list."""
    tables = {name: _table([{"source": name, "text": t, "text_chars": len(t)} for t in texts])
              for name, texts in pools.items()}
    picks, order, stats = mixing.sample_corpus(tables, weights, total_chars, seed, upsample)
    return mixing.take(tables, picks, order, ["source", "text"]).to_list(), stats


def _pool(name: str, n: int) -> list[dict]:
    """n distinct task records of one source (prompts are unique across sources)."""
    return [
        {"source": name, "task": "classification", "prompt": f"{name} prompt {i}", "completion": " positive",
         "answer": "positive"}
        for i in range(n)
    ]


POOLS = {"a": _pool("a", 400), "b": _pool("b", 400), "c": _pool("c", 400)}


def _prompts(records, source=None):
    return {r["prompt"] for r in records if source is None or r["source"] == source}


# --- normalize, allocate, experiment_tag ---------------------------------------------------------------------


def test_normalize_drops_zeros_and_sums_to_one():
    rates = normalize({"imdb": 2.0, "wikitext": 0.0, "sst2": 1.0, "gsm8k": 1.0})
    assert list(rates) == ["imdb", "sst2", "gsm8k"]  # params order, zero weight gone
    assert sum(rates.values()) == pytest.approx(1.0)
    assert rates["imdb"] == pytest.approx(0.5)
    assert rates["imdb"] / rates["sst2"] == pytest.approx(2.0)
    assert rates["sst2"] == pytest.approx(rates["gsm8k"])


def test_normalize_keeps_normalized_weights():
    assert normalize({"a": 0.7, "b": 0.3}) == pytest.approx({"a": 0.7, "b": 0.3})


@pytest.mark.parametrize(
    ("rates", "total", "expected"),
    [
        ({"a": 0.7, "b": 0.3}, 10, {"a": 7, "b": 3}),
        ({"a": 0.5, "b": 0.3, "c": 0.2}, 7, {"a": 4, "b": 2, "c": 1}),  # 3.5, 2.1, 1.4: the .5 gets the spare row
        ({"a": 0.45, "b": 0.35, "c": 0.2}, 10, {"a": 5, "b": 3, "c": 2}),  # 4.5, 3.5, 2.0: tie -> params order
        ({"a": 0.2, "b": 0.2, "c": 0.6}, 3, {"a": 1, "b": 0, "c": 2}),  # 0.6, 0.6, 1.8
        ({"a": 1.0}, 13, {"a": 13}),
        ({"a": 0.5, "b": 0.5}, 0, {"a": 0, "b": 0}),
    ],
)
def test_allocate_exact_cases(rates, total, expected):
    assert allocate(rates, total) == expected


@pytest.mark.parametrize("total", [1, 2, 3, 7, 10, 99, 100, 101, 3000])
def test_allocate_sums_to_total_and_follows_rates(total):
    rates = normalize({"a": 1, "b": 1, "c": 1, "d": 4})
    counts = allocate(rates, total)
    assert sum(counts.values()) == total
    for name, rate in rates.items():
        assert abs(counts[name] - rate * total) < 1  # never more than one row off its exact share


def test_experiment_tag():
    assert experiment_tag({"imdb": 0.7, "sst2": 0.3}) == "mix_imdb-70_sst2-30"
    assert experiment_tag({"imdb": 7, "sst2": 3}) == "mix_imdb-70_sst2-30"
    assert experiment_tag({"imdb": 0.4, "sst2": 0.4, "gsm8k": 0.2, "wikitext": 0.0}) == "mix_imdb-40_sst2-40_gsm8k-20"


# --- sample_tasks -----------------------------------------------------------------------------------------------

WEIGHTS = {"a": 0.7, "b": 0.3}


def test_sample_tasks_is_deterministic():
    first = sample_tasks(POOLS, WEIGHTS, 100, 20, seed=1, upsample=False)
    second = sample_tasks(POOLS, WEIGHTS, 100, 20, seed=1, upsample=False)
    assert first == second


def test_sample_tasks_does_not_modify_the_pools():
    before = [r["prompt"] for r in POOLS["a"]]
    sample_tasks(POOLS, WEIGHTS, 100, 20, seed=1, upsample=False)
    assert [r["prompt"] for r in POOLS["a"]] == before


def test_sample_tasks_counts_follow_allocate():
    sft, rl, stats = sample_tasks(POOLS, WEIGHTS, 100, 20, seed=1, upsample=False)
    assert len(sft) == 100 and len(rl) == 20
    for name, count in allocate(normalize(WEIGHTS), 100).items():
        assert sum(r["source"] == name for r in sft) == count == stats[name]["rows"] == stats[name]["requested_rows"]
    for name, count in allocate(normalize(WEIGHTS), 20).items():
        assert sum(r["source"] == name for r in rl) == count == stats[name]["rl_rows"]
    assert "c" not in stats  # a pool without weight contributes nothing
    assert stats["a"]["effective_rate"] == pytest.approx(0.7)
    assert all(s["upsampled_rows"] == 0 for s in stats.values())


def test_sample_tasks_sft_and_rl_are_disjoint():
    sft, rl, _ = sample_tasks(POOLS, WEIGHTS, 300, 100, seed=3, upsample=False)
    assert not _prompts(sft) & _prompts(rl)
    assert len(_prompts(sft)) == len(sft)  # without upsampling, no row is drawn twice
    assert len(_prompts(rl)) == len(rl)


def test_sample_tasks_sources_are_interleaved():
    sft, _, _ = sample_tasks(POOLS, WEIGHTS, 100, 20, seed=1, upsample=False)
    sources = [r["source"] for r in sft]
    assert sources != sorted(sources) and sources != sorted(sources, reverse=True)


def test_short_source_gives_all_it_has_without_upsample():
    pools = {"a": _pool("a", 400), "b": _pool("b", 30)}
    sft, rl, stats = sample_tasks(pools, {"a": 0.5, "b": 0.5}, 100, 20, seed=0, upsample=False)
    b_rows = [r for r in sft + rl if r["source"] == "b"]
    assert len(b_rows) == 30 and _prompts(b_rows) == _prompts(pools["b"])  # every b row, each once
    assert stats["b"]["rows"] + stats["b"]["rl_rows"] == 30
    assert stats["b"]["rows"] < stats["b"]["requested_rows"] == 50
    assert stats["b"]["upsampled_rows"] == 0
    assert stats["b"]["effective_rate"] < 0.5
    assert not _prompts(sft) & _prompts(rl)


def test_short_source_is_topped_up_with_upsample():
    pools = {"a": _pool("a", 400), "b": _pool("b", 30)}
    sft, rl, stats = sample_tasks(pools, {"a": 0.5, "b": 0.5}, 100, 20, seed=0, upsample=True)
    assert stats["b"]["rows"] == 50 and stats["b"]["rl_rows"] == 10
    assert sum(r["source"] == "b" for r in sft) == 50
    assert stats["b"]["upsampled_rows"] == 60 - 30
    assert stats["a"]["upsampled_rows"] == 0
    assert not _prompts(sft) & _prompts(rl)  # upsampling repeats rows within a split, never across


def test_adding_a_source_keeps_the_rows_of_another():
    """Source a keeps its share (half), so it must contribute exactly the same rows when c is added."""
    sft_two, rl_two, _ = sample_tasks(POOLS, {"a": 0.5, "b": 0.5}, 200, 40, seed=7, upsample=False)
    sft_three, rl_three, _ = sample_tasks(POOLS, {"a": 0.5, "b": 0.25, "c": 0.25}, 200, 40, seed=7, upsample=False)
    assert len(_prompts(sft_two, "a")) == 100
    assert _prompts(sft_two, "a") == _prompts(sft_three, "a")
    assert _prompts(rl_two, "a") == _prompts(rl_three, "a")


def test_rl_mixture_sets_the_rl_prompts_alone():
    """rl_mixture reshapes the GRPO prompts and leaves the SFT rows as they were; a source with SFT weight 0 can
    feed GRPO alone; an empty rl_mixture is the SFT weights (the same rows, byte for byte)."""
    weights = {"a": 0.5, "b": 0.5, "c": 0.0}
    sft, rl, stats = sample_tasks(POOLS, weights, 100, 40, 1, False)
    assert sample_tasks(POOLS, weights, 100, 40, 1, False, {}) == (sft, rl, stats)
    sft2, rl2, stats2 = sample_tasks(POOLS, weights, 100, 40, 1, False, {"b": 0.25, "c": 0.75})
    assert sft2 == sft
    assert [len(_prompts(rl2, name)) for name in "abc"] == [0, 10, 30]
    assert stats2["c"]["rows"] == 0 and stats2["c"]["rl_rows"] == 30 and stats2["c"]["rl_rate"] == 0.75
    assert not _prompts(sft2) & _prompts(rl2)


def test_changing_the_seed_changes_the_sample():
    sft_1, rl_1, _ = sample_tasks(POOLS, WEIGHTS, 100, 20, seed=1, upsample=False)
    sft_2, rl_2, _ = sample_tasks(POOLS, WEIGHTS, 100, 20, seed=2, upsample=False)
    assert _prompts(sft_1, "a") != _prompts(sft_2, "a")
    assert _prompts(rl_1) != _prompts(rl_2)


# --- sample_corpus ----------------------------------------------------------------------------------------------


def _docs(name: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{name}{i} " + "x" * rng.randint(20, 200) for i in range(n)]


DOCS = {"wiki": _docs("wiki", 300, 1), "imdb": _docs("imdb", 300, 2), "gsm8k": _docs("gsm8k", 300, 3)}
CORPUS_WEIGHTS = {"wiki": 0.5, "imdb": 0.3, "gsm8k": 0.2}


def test_sample_corpus_shares_characters_by_weight():
    total = 20_000
    docs, stats = sample_corpus(DOCS, CORPUS_WEIGHTS, total, seed=0, upsample=False)
    for name, rate in normalize(CORPUS_WEIGHTS).items():
        chars = sum(len(d["text"]) for d in docs if d["source"] == name)
        longest = max(len(t) for t in DOCS[name])
        assert rate * total <= chars < rate * total + longest  # whole documents: at most one past its share
        assert stats[name]["chars"] == chars
        assert stats[name]["docs"] == sum(d["source"] == name for d in docs)
    assert sum(s["effective_rate"] for s in stats.values()) == pytest.approx(1.0)


def test_sample_corpus_is_deterministic_and_seeded():
    first = sample_corpus(DOCS, CORPUS_WEIGHTS, 10_000, seed=0, upsample=False)
    assert first == sample_corpus(DOCS, CORPUS_WEIGHTS, 10_000, seed=0, upsample=False)
    other, _ = sample_corpus(DOCS, CORPUS_WEIGHTS, 10_000, seed=1, upsample=False)
    assert [d["text"] for d in first[0]] != [d["text"] for d in other]


def test_sample_corpus_takes_whole_distinct_documents():
    docs, _ = sample_corpus(DOCS, CORPUS_WEIGHTS, 10_000, seed=0, upsample=False)
    texts = [d["text"] for d in docs]
    assert len(set(texts)) == len(texts)
    for d in docs:
        assert d["text"] in DOCS[d["source"]]


def test_sample_corpus_short_source_without_and_with_upsample():
    pools = {"wiki": _docs("wiki", 5, 1), "imdb": DOCS["imdb"]}
    weights, total = {"wiki": 0.5, "imdb": 0.5}, 20_000
    _, stats = sample_corpus(pools, weights, total, seed=0, upsample=False)
    assert stats["wiki"]["docs"] == 5 and stats["wiki"]["chars"] == sum(len(t) for t in pools["wiki"])
    _, stats = sample_corpus(pools, weights, total, seed=0, upsample=True)
    assert stats["wiki"]["chars"] >= 0.5 * total


def test_sampling_reads_sizes_not_texts():
    """The corpus sample is decided from `text_chars` alone: the picks do not change when the texts do."""
    tables = {"a": Dataset.from_dict({"text": ["x" * n for n in range(1, 200)], "text_chars": list(range(1, 200))})}
    blank = {"a": Dataset.from_dict({"text": [""] * 199, "text_chars": list(range(1, 200))})}
    picks, order, _ = mixing.sample_corpus(tables, {"a": 1}, 3000, 0, False)
    same, same_order, _ = mixing.sample_corpus(blank, {"a": 1}, 3000, 0, False)
    assert np.array_equal(picks["a"], same["a"]) and np.array_equal(order, same_order)
    assert 3000 <= np.arange(1, 200)[picks["a"]].sum() < 3000 + 199
