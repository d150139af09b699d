"""Sampling mixtures: the SFT/RL task mixture by rows, the pretraining corpus by characters.

Weights are normalized (only their ratios matter, so `-S mixture.imdb=0.7` alone is valid). Each
source is shuffled with its own seeded generator, so adding a source never changes which rows another
source contributes. Rows are drawn without replacement; when a source has too few rows, it gives all it
has (its effective rate then falls short of the requested one, and metrics/mix.json says so) unless
`mix.upsample` allows drawing with replacement.
"""
import random


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


def _draw(pool: list, n: int, rng: random.Random, upsample: bool) -> tuple[list, int]:
    """n items of pool without replacement (or all of it); with upsample, topped up with replacement."""
    if n <= len(pool):
        return pool[:n], 0
    if not upsample or not pool:
        return list(pool), 0
    extra = [rng.choice(pool) for _ in range(n - len(pool))]
    return list(pool) + extra, len(extra)


def sample_tasks(
    pools: dict[str, list[dict]], weights: dict[str, float], sft_rows: int, rl_rows: int, seed: int, upsample: bool
) -> tuple[list[dict], list[dict], dict]:
    """Disjoint SFT and RL samples of the task mixture, and per-source stats."""
    rates = normalize(weights)
    sft_counts, rl_counts = allocate(rates, sft_rows), allocate(rates, rl_rows)
    sft, rl, stats = [], [], {}
    for name, rate in rates.items():
        rng = random.Random(f"{seed}-mix-{name}")
        pool = list(pools[name])
        rng.shuffle(pool)
        want_sft, want_rl = sft_counts[name], rl_counts[name]
        # The RL rows are held apart first, so GRPO prompts are never rows the SFT model was trained on.
        need = want_sft + want_rl
        rl_share = want_rl if len(pool) >= need else round(len(pool) * want_rl / need)
        rl_part, rl_extra = _draw(pool[:rl_share], want_rl, rng, upsample)
        sft_part, sft_extra = _draw(pool[rl_share:], want_sft, rng, upsample)
        sft += sft_part
        rl += rl_part
        stats[name] = {
            "weight": weights[name],
            "rate": rate,
            "requested_rows": want_sft,
            "rows": len(sft_part),
            "rl_rows": len(rl_part),
            "upsampled_rows": sft_extra + rl_extra,
            "chars": sum(len(r["prompt"]) + len(r["completion"]) for r in sft_part),
        }
    for name in stats:
        stats[name]["effective_rate"] = stats[name]["rows"] / max(1, len(sft))
    random.Random(f"{seed}-mix-sft").shuffle(sft)
    random.Random(f"{seed}-mix-rl").shuffle(rl)
    return sft, rl, stats


def sample_corpus(
    pools: dict[str, list[str]], weights: dict[str, float], total_chars: int, seed: int, upsample: bool
) -> tuple[list[dict], dict]:
    """Pretraining documents: each source contributes whole documents up to its share of total_chars."""
    docs, stats = [], {}
    for name, rate in normalize(weights).items():
        rng = random.Random(f"{seed}-corpus-{name}")
        pool = list(pools[name])
        rng.shuffle(pool)
        budget, chars, taken, i = rate * total_chars, 0, [], 0
        while chars < budget and pool and (i < len(pool) or upsample):
            text = pool[i] if i < len(pool) else rng.choice(pool)
            taken.append({"source": name, "text": text})
            chars += len(text)
            i += 1
        docs += taken
        stats[name] = {"weight": weights[name], "rate": rate, "docs": len(taken), "chars": chars}
    total = sum(s["chars"] for s in stats.values())
    for name in stats:
        stats[name]["effective_rate"] = stats[name]["chars"] / max(1, total)
    random.Random(f"{seed}-corpus").shuffle(docs)
    return docs, stats
