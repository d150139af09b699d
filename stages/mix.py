"""mix: harmonize every dataset into one record shape, then sample the SFT/RL mixture and the corpus.

Train rows whose text is held-out text of any dataset of the run are removed first (counted per source in
metrics/mix.json as held_out_removed); the pretraining validation slice (corpus_val, for the eval loss and
checkpoint selection) is carved from train texts, so it shares no text with the held-out rows.

Harmonizing is a batched map over the memory-mapped raw tables (`num_proc` processes); sampling picks row
numbers. Writes data/mixed/{sft,rl,corpus,corpus_val}/ and data/mixed/eval/<name>/ (held-out rows of every
dataset in `mixture`) as Parquet shards, and metrics/mix.json.
"""
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from lancy import params as P
from lancy.catalog import CATALOG
from lancy.errors import run_stage
from lancy.files import write_json
from lancy.harmonize import RECORD, harmonize_batch, harmonized_features
from lancy.mixing import experiment_tag, held_out_keys, sample_corpus, sample_tasks, split_validation, take
from lancy.tables import processes, read_table, write_table

PARAMS = ("seed", "num_proc", "mixture", "rl_mixture", "corpus", "mix", "prompts")
RAW, OUT = Path("data/raw"), Path("data/mixed")


def harmonized(name: str, split: str, template: str | None, held_out: set[bytes] | None, num_proc: int):
    raw = read_table(RAW / name / split)
    return raw.map(harmonize_batch, batched=True, remove_columns=raw.column_names, features=harmonized_features(),
                   fn_kwargs={"spec": CATALOG[name], "split": split, "template": template, "held_out": held_out},
                   num_proc=processes(num_proc, len(raw)), desc=f"harmonize {name} {split}")


def where(dataset, *, held_out: bool, has: str):
    """The rows with `held_out` as given and a value in column `has` (a record, or a pretraining text), as an
    indices mapping over the harmonized table."""
    table = dataset.data.table
    mask = pc.and_(pc.equal(table.column("held_out"), held_out), pc.is_valid(table.column(has)))
    return dataset.select(np.flatnonzero(mask.to_numpy(zero_copy_only=False)))


def dropped_counts(dataset, split: str) -> dict[str, int]:
    """Rows left out, by reason, of the rows kept (not held out)."""
    table = dataset.data.table
    reasons = pc.filter(table.column("dropped"), pc.invert(table.column("held_out"))).drop_null()
    return {f"{split}/{row['values']}": row["counts"] for row in pc.value_counts(reasons).to_pylist()}


def main() -> None:
    p = P.load(PARAMS, catalog=CATALOG)
    held_out = set().union(*(held_out_keys(CATALOG[name], read_table(RAW / name / "test")) for name in p.mixture))
    train, test, dropped, removed = {}, {}, {}, {}
    for name in p.mixture:
        template = p.prompts.get(name)
        train[name] = harmonized(name, "train", template, held_out, p.num_proc)
        test[name] = harmonized(name, "test", template, None, p.num_proc)
        dropped[name] = {**dropped_counts(train[name], "train"), **dropped_counts(test[name], "test")}
        removed[name] = {"tasks": len(where(train[name], held_out=True, has="prompt")),  # out of the SFT/RL pools
                         "corpus": len(where(train[name], held_out=True, has="text"))}  # and of the corpus

    tasks = {name: p.mixture[name] for name in p.mixture if CATALOG[name].task != "corpus"}
    pools = {name: where(train[name], held_out=False, has="prompt") for name in tasks}
    sft, rl, sft_order, rl_order, task_stats = sample_tasks(
        pools, tasks, p.mix.sft_rows, p.mix.rl_rows, p.seed, p.mix.upsample, p.rl_mixture
    )
    # The pretraining eval loss (and checkpoint choice) is on a twentieth of the corpus size, same weights,
    # set apart from the train texts: never on the held-out rows that `evaluate` reports.
    texts = {name: where(train[name], held_out=False, has="text") for name in p.corpus}
    val, val_order, val_stats, rest = split_validation(texts, p.corpus, p.mix.corpus_chars // 20, p.seed, p.num_proc)
    corpus, corpus_order, corpus_stats = sample_corpus(rest, p.corpus, p.mix.corpus_chars, p.seed, p.mix.upsample)

    write_table(take(pools, sft, sft_order, list(RECORD)), OUT / "sft")
    write_table(take(pools, rl, rl_order, list(RECORD)), OUT / "rl")
    write_table(take(rest, corpus, corpus_order, ["source", "text"]), OUT / "corpus")
    write_table(take(texts, val, val_order, ["source", "text"]), OUT / "corpus_val")
    for name in p.mixture:
        records = CATALOG[name].task != "corpus"
        rows = where(test[name], held_out=False, has="prompt" if records else "text")
        write_table(rows.select_columns(list(RECORD) if records else ["source", "text"]), OUT / "eval" / name)

    sft_rows, rl_rows = sum(map(len, sft.values())), sum(map(len, rl.values()))
    write_json(Path("metrics/mix.json"), {
        "experiment": experiment_tag(tasks),
        "sft_rows": sft_rows,
        "rl_rows": rl_rows,
        "sources": {name: {**task_stats.get(name, {}), "dropped": dropped[name], "held_out_removed": removed[name]}
                    for name in p.mixture},
        "corpus": {"docs": len(corpus_order), "chars": sum(s["chars"] for s in corpus_stats.values()),
                   "sources": corpus_stats,
                   "validation": {"docs": len(val_order), "chars": sum(s["chars"] for s in val_stats.values())}},
    })
    print(f"{experiment_tag(tasks)}: {sft_rows} SFT rows, {rl_rows} RL prompts, {len(corpus_order)} corpus documents")


if __name__ == "__main__":
    run_stage(main)
