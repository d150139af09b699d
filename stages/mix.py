"""mix: harmonize every dataset into one record shape, then sample the SFT/RL mixture and the corpus.

Train rows whose text is held-out text of any dataset of the run are removed first (counted per source in
metrics/mix.json as held_out_removed); the pretraining validation slice (corpus_val, for the eval loss and
checkpoint selection) is carved from train texts, so it shares no text with the held-out rows.

Harmonizing is a batched map over the memory-mapped raw tables (`num_proc` processes), or Ray Data tasks over
their Parquet row groups with `data.engine: ray` (lancy.ray_data: the same bytes out); sampling picks row numbers.
Writes data/mixed/{sft,rl,corpus,corpus_val}/ and data/mixed/eval/<name>/ (held-out rows of every dataset in
`mixture`, each with its stable row `id`) as Parquet shards, and metrics/mix.json.
"""
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lancy import params as P
from lancy import ray_data
from lancy.catalog import CATALOG
from lancy.errors import run_stage
from lancy.files import write_json
from lancy.harmonize import RECORD, harmonize_batch, harmonized_features
from lancy.mixing import experiment_tag, held_out_keys, key_mask, sample_corpus, sample_tasks, split_validation, take
from lancy.tables import processes, read_table, write_table

PARAMS = ("seed", "num_proc", "data.engine", "mixture", "rl_mixture", "corpus", "mix", "prompts")
RAW, OUT = Path("data/raw"), Path("data/mixed")


def harmonized(name: str, split: str, template: str | None, num_proc: int, engine: str):
    kwargs = {"spec": CATALOG[name], "split": split, "template": template}
    if engine == "ray":  # Ray tasks over the Parquet row groups
        return ray_data.map_table(RAW / name / split, harmonize_batch, harmonized_features(), **kwargs)
    raw = read_table(RAW / name / split)
    return raw.map(harmonize_batch, batched=True, remove_columns=raw.column_names, features=harmonized_features(),
                   fn_kwargs=kwargs, num_proc=processes(num_proc, len(raw)), desc=f"harmonize {name} {split}")


def has(dataset, column: str) -> np.ndarray:
    """Which rows hold a value in `column` (a record's prompt, or a pretraining text)."""
    return pc.is_valid(dataset.data.column(column)).to_numpy(zero_copy_only=False)


def where(dataset, mask: np.ndarray):
    """The rows where mask holds, as an indices mapping over the harmonized table."""
    return dataset.select(np.flatnonzero(mask))


def dropped_counts(dataset, kept: np.ndarray, split: str) -> dict[str, int]:
    """Rows left out, by reason, of the rows kept (not held out)."""
    reasons = pc.filter(dataset.data.column("dropped"), pa.array(kept)).drop_null()
    return {f"{split}/{row['values']}": row["counts"] for row in pc.value_counts(reasons).to_pylist()}


def row_ids(batch: dict) -> dict:
    """A held-out row's stable id (lancy.results): the hash of its held-out text, the first of its match keys."""
    return {"id": [keys[0].hex() for keys in batch["keys"]]}


def main() -> None:
    p = P.load(PARAMS, catalog=CATALOG)
    held_out = set().union(*(held_out_keys(CATALOG[name], read_table(RAW / name / "test")) for name in p.mixture))
    train, test, kept, dropped, removed = {}, {}, {}, {}, {}
    if p.data.engine == "ray":
        ray_data.start(p.num_proc)
    for name in p.mixture:
        template = p.prompts.get(name)
        train[name] = harmonized(name, "train", template, p.num_proc, p.data.engine)
        test[name] = harmonized(name, "test", template, p.num_proc, p.data.engine)
        kept[name] = ~key_mask(train[name], held_out)
        dropped[name] = {**dropped_counts(train[name], kept[name], "train"),
                         **dropped_counts(test[name], np.ones(len(test[name]), dtype=bool), "test")}
        removed[name] = {"tasks": int((~kept[name] & has(train[name], "prompt")).sum()),  # out of the SFT/RL pools
                         "corpus": int((~kept[name] & has(train[name], "text")).sum())}  # and of the corpus

    tasks = {name: p.mixture[name] for name in p.mixture if CATALOG[name].task != "corpus"}
    pools = {name: where(train[name], kept[name] & has(train[name], "prompt")) for name in tasks}
    sft, rl, sft_order, rl_order, task_stats = sample_tasks(
        pools, tasks, p.mix.sft_rows, p.mix.rl_rows, p.seed, p.mix.upsample, p.rl_mixture
    )
    # The pretraining eval loss (and checkpoint choice) is on a twentieth of the corpus size, same weights,
    # set apart from the train texts: never on the held-out rows that `evaluate` reports.
    texts = {name: where(train[name], kept[name] & has(train[name], "text")) for name in p.corpus}
    val, val_order, val_stats, rest = split_validation(texts, p.corpus, p.mix.corpus_chars // 20, p.seed)
    corpus, corpus_order, corpus_stats = sample_corpus(rest, p.corpus, p.mix.corpus_chars, p.seed, p.mix.upsample)

    write_table(take(pools, sft, sft_order, list(RECORD)), OUT / "sft")
    write_table(take(pools, rl, rl_order, list(RECORD)), OUT / "rl")
    write_table(take(rest, corpus, corpus_order, ["source", "text"]), OUT / "corpus")
    write_table(take(texts, val, val_order, ["source", "text"]), OUT / "corpus_val")
    for name in p.mixture:
        records = CATALOG[name].task != "corpus"
        rows = where(test[name], has(test[name], "prompt" if records else "text")).map(
            row_ids, batched=True, desc=f"row ids {name}")
        write_table(rows.select_columns([*(RECORD if records else ["source", "text"]), "id"]), OUT / "eval" / name)

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
