"""Sampling mixtures: the SFT/RL task mixture by rows, the pretraining corpus by characters.

Weights are normalized (only their ratios matter, so `-S mixture.imdb=0.7` alone is valid). Each
source is shuffled with its own seeded generator, so adding a source never changes which rows another
source contributes. Rows are drawn without replacement; when a source has too few rows, it gives all it
has (its effective rate then falls short of the requested one, and metrics/mix.json says so) unless
`mix.upsample` allows drawing with replacement.

Sampling works on row numbers and sizes (seeded numpy permutations of each pool, its `record_chars` or
`text_chars` column), never on the rows: `take` makes the output an indices mapping over the memory-mapped
pools, which the mix stage writes batch by batch.

Held-out text never reaches training, whichever dataset holds it: datasets of one run often share text
(the nested FinancialPhraseBank configs, gsm8k and gsm8k_socratic, an MMLU subject and `mmlu`), so each
train row is checked against the held-out rows of every dataset of the run before anything is sampled.
The held-out texts are the input of each held-out task row (its text columns other than the target, plus
the options of a multiple-choice row), however short, and the text of each held-out corpus row of at least
MIN_WORDS words (shorter ones, such as the wikitext section heading "= = Early life = =", recur in every
article and identify no row). A train row goes when its input or its pretraining text equals a held-out
text after casefolding and collapsing whitespace, or has a line that does: a few-shot prompt or a document
quoting a held-out sentence on its own line is caught, a sentence inside a longer line is not. Held-out
texts are kept as a set of hashes: bounded memory, and `held_out_mask` works on any batch of texts.
"""
import hashlib
import re
from collections.abc import Iterable

import numpy as np

from lancy.catalog import DatasetSpec, to_text
from lancy.tables import int_column, per_row, rng

MIN_WORDS = 4


def normalize(weights: dict[str, float]) -> dict[str, float]:
    """Weights > 0, scaled to sum to 1, in params order."""
    total = sum(w for w in weights.values() if w > 0)
    return {name: w / total for name, w in weights.items() if w > 0}


def allocate(rates: dict[str, float], total: int) -> dict[str, int]:
    """Split `total` rows by rates with the largest-remainder method (the counts sum to total exactly)."""
    exact = {name: rate * total for name, rate in rates.items()}
    counts = {name: int(x) for name, x in exact.items()}
    by_remainder = sorted(rates, key=lambda name: (counts[name] - exact[name], list(rates).index(name)))
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def experiment_tag(weights: dict[str, float]) -> str:
    """A readable tag of the mixture in the original system's style, e.g. mix_imdb-70_sst2-30."""
    return "mix_" + "_".join(f"{name}-{round(rate * 100)}" for name, rate in normalize(weights).items())


def _draw(pool: np.ndarray, n: int, rng: np.random.Generator, upsample: bool) -> tuple[np.ndarray, int]:
    """n of the row numbers in pool without replacement (or all of them); with upsample, topped up with
    replacement."""
    if n <= len(pool):
        return pool[:n], 0
    if not upsample or not len(pool):
        return pool, 0
    extra = rng.choice(pool, size=n - len(pool))
    return np.concatenate([pool, extra]), len(extra)


def take(pools: dict, picks: dict[str, np.ndarray], order: np.ndarray, columns: list[str]):
    """One Dataset of the picked rows of every pool (row numbers per source, in order), then shuffled by
    `order`; only `columns` are kept. Nothing is copied: the result is an indices mapping over the pools."""
    from datasets import concatenate_datasets

    parts = [pools[name].select_columns(columns).select(picks[name]) for name in picks]
    if not parts:
        raise ValueError("no pool to take rows from")
    return concatenate_datasets(parts).select(order)


def sample_tasks(
    pools: dict, weights: dict[str, float], sft_rows: int, rl_rows: int, seed: int, upsample: bool,
    rl_weights: dict[str, float] | None = None,
) -> tuple[dict, dict, np.ndarray, np.ndarray, dict]:
    """Disjoint SFT and RL samples of the task mixture: (SFT row numbers per source, RL row numbers per
    source, SFT order, RL order, per-source stats). Pools are Datasets of records with `record_chars`.

    RL prompts follow `rl_weights` (`rl_mixture`), or the SFT weights when it is empty; a source may feed
    GRPO alone (SFT weight 0), so the policy learns it from rewards only.
    """
    rates = normalize(weights)
    rl_rates = normalize(rl_weights) if rl_weights else rates
    sft_counts, rl_counts = allocate(rates, sft_rows), allocate(rl_rates, rl_rows)
    sft, rl, stats = {}, {}, {}
    for name in (n for n in weights if n in rates or n in rl_rates):  # params order
        generator = rng(seed, "mix", name)
        pool = generator.permutation(len(pools[name]))
        rate, want_sft, want_rl = rates.get(name, 0.0), sft_counts.get(name, 0), rl_counts.get(name, 0)
        # SFT rows come first and RL prompts from the rest, so GRPO prompts are never rows the SFT model was
        # trained on, and changing `rl_mixture` leaves the SFT rows as they are (unless the pool is short).
        need = want_sft + want_rl
        sft_share = want_sft if len(pool) >= need else len(pool) - round(len(pool) * want_rl / need)
        sft[name], sft_extra = _draw(pool[:sft_share], want_sft, generator, upsample)
        rl[name], rl_extra = _draw(pool[sft_share:], want_rl, generator, upsample)
        stats[name] = {
            "weight": weights[name],
            "rate": rate,
            "rl_rate": rl_rates.get(name, 0.0),
            "requested_rows": want_sft,
            "rows": len(sft[name]),
            "rl_rows": len(rl[name]),
            "upsampled_rows": sft_extra + rl_extra,
            "chars": int(int_column(pools[name], "record_chars")[sft[name]].sum()),
        }
    total = sum(len(idx) for idx in sft.values())
    for name in stats:
        stats[name]["effective_rate"] = stats[name]["rows"] / max(1, total)
    sft_order = rng(seed, "mix-sft").permutation(total)
    rl_order = rng(seed, "mix-rl").permutation(sum(len(idx) for idx in rl.values()))
    return sft, rl, sft_order, rl_order, stats


def _prefix(sizes: np.ndarray, order: np.ndarray, budget: float, step: int = 1 << 20) -> int:
    """How many documents, taken in `order`, first reach `budget` characters (all of them if they never do);
    summed a million at a time, so a small corpus from a huge pool costs little."""
    total = 0
    for start in range(0, len(order), step) if budget > 0 else ():
        running = total + np.cumsum(sizes[order[start:start + step]])
        if running[-1] >= budget:
            return start + int(np.searchsorted(running, budget, side="left")) + 1
        total = int(running[-1])
    return len(order) if budget > 0 else 0


def sample_corpus(
    pools: dict, weights: dict[str, float], total_chars: int, seed: int | str, upsample: bool
) -> tuple[dict, np.ndarray, dict]:
    """Pretraining documents: each source contributes whole documents up to its share of total_chars.

    Returns (row numbers per source, order, stats); pools are Datasets with `text_chars`. Only those sizes are
    read: texts that are not taken are never loaded.
    """
    picks, stats = {}, {}
    for name, rate in normalize(weights).items():
        generator = rng(seed, "corpus", name)
        sizes = int_column(pools[name], "text_chars")
        order = generator.permutation(len(sizes))
        budget = rate * total_chars
        taken = order[:_prefix(sizes, order, budget)]
        chars = int(sizes[taken].sum())
        if upsample and chars < budget and sizes.sum() > 0:  # top up with documents drawn with replacement
            extra = []
            while chars < budget:
                draw = generator.choice(len(sizes), size=max(16, int((budget - chars) / sizes.mean() * 1.1)))
                cut = int(np.searchsorted(np.cumsum(sizes[draw]), budget - chars, side="left")) + 1
                extra.append(draw[:cut])
                chars += int(sizes[draw[:cut]].sum())
            taken = np.concatenate([taken, *extra])
        picks[name] = taken
        stats[name] = {"weight": weights[name], "rate": rate, "docs": len(taken), "chars": chars}
    total = sum(s["chars"] for s in stats.values())
    for name in stats:
        stats[name]["effective_rate"] = stats[name]["chars"] / max(1, total)
    return picks, rng(seed, "corpus").permutation(sum(len(idx) for idx in picks.values())), stats


def text_key(text: str) -> bytes:
    """The hash of a text as matched: casefolded, whitespace collapsed."""
    return hashlib.blake2b(" ".join(text.casefold().split()).encode(), digest_size=16).digest()


def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def text_keys(texts: Iterable[str | None], min_words: int = 1) -> set[bytes]:
    """Hashes of the texts that have at least min_words words."""
    return {text_key(t) for t in texts if t is not None and _words(t) >= min_words}


def match_keys(*texts: str | None) -> list[bytes]:
    """The hashes a row is matched by: each of its texts' and, for a text of several lines, each line's."""
    keys = []
    for text in dict.fromkeys(t for t in texts if t is not None):
        lines = text.splitlines()
        keys += [text_key(text)] + ([text_key(line) for line in lines] if len(lines) > 1 else [])
    return list(dict.fromkeys(keys))


def held_out_mask(texts: list[str | None], keys: set[bytes]) -> list[bool]:
    """For a batch of texts: whether each one, or one of its lines, is a held-out text (its hash in keys)."""
    return [text is not None and not keys.isdisjoint(match_keys(text)) for text in texts]


def key_mask(dataset, keys: set[bytes]) -> np.ndarray:
    """For each row of `dataset`: whether one of its `keys` (column of `match_keys` hashes) is in `keys`.
    Vectorized in Arrow, a chunk of rows at a time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(sorted(keys), type=pa.binary())
    parts = []
    for chunk in dataset.data.column("keys").chunks:  # every row of the underlying table, a chunk at a time
        hits = pc.list_parent_indices(chunk).to_numpy()[pc.is_in(chunk.flatten(), value_set=value_set).to_numpy(
            zero_copy_only=False)]
        mask = np.zeros(len(chunk), dtype=bool)
        mask[hits] = True
        parts.append(mask)
    return per_row(dataset, np.concatenate(parts) if parts else np.zeros(0, dtype=bool))


def row_input(spec: DatasetSpec, row: dict) -> str | None:
    """The text that identifies a task row: its text columns other than the target, and its options."""
    parts = [str(row[c]) for c in spec.text_columns if c != spec.target and row.get(c) is not None]
    if spec.task == "multiple_choice" and isinstance(row.get(spec.choices), list):
        parts += [str(option) for option in row[spec.choices]]
    text = "\n".join(parts)
    return text if text.strip() else None


def held_out_keys(spec: DatasetSpec, rows: list[dict]) -> set[bytes]:
    """Hashes of the held-out texts of one dataset's held-out rows."""
    if spec.task == "corpus":
        return text_keys((to_text(spec, row) for row in rows), MIN_WORDS)
    return text_keys(row_input(spec, row) for row in rows)


def remove_held_out(spec: DatasetSpec, rows: list[dict], keys: set[bytes]) -> tuple[list[dict], list[dict]]:
    """(kept, removed) train rows: a row goes when its input or its pretraining text is held-out text."""
    inputs = held_out_mask([row_input(spec, row) for row in rows], keys)
    texts = held_out_mask([to_text(spec, row) for row in rows], keys)
    kept = [row for row, a, b in zip(rows, inputs, texts, strict=True) if not (a or b)]
    removed = [row for row, a, b in zip(rows, inputs, texts, strict=True) if a or b]
    return kept, removed


def split_validation(
    pools: dict, weights: dict[str, float], total_chars: int, seed: int
) -> tuple[dict, np.ndarray, dict, dict]:
    """A seeded validation slice of the corpus pools (total_chars, same weights) and the pools without it.

    Pools are Datasets with `text`, `text_chars` and `keys` (`match_keys` of each row).
    Returns (row numbers per source, order, stats, pools without the slice). Carved from train texts, it is
    disjoint from the held-out rows that `evaluate` reports, so choosing a checkpoint on it does not peek at
    the evaluation; the pools lose its rows and, as held-out text is matched, any other copy of them.
    """
    picks, order, stats = sample_corpus(pools, weights, total_chars, f"{seed}-validation", upsample=False)
    keys = set()
    for name, idx in picks.items():
        for batch in pools[name].select_columns(["text"]).select(np.sort(idx)).iter(batch_size=1000):
            keys |= text_keys(batch["text"], MIN_WORDS)
    rest = {}
    for name, pool in pools.items():
        gone = key_mask(pool, keys)
        gone[picks.get(name, [])] = True
        rest[name] = pool.select(np.flatnonzero(~gone))
    return picks, order, stats, rest
