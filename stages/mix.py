"""mix: harmonize every dataset into one record shape, then sample the SFT/RL mixture and the corpus.

Train rows whose text is held-out text of any dataset of the run are removed first (counted per source in
metrics/mix.json as held_out_removed); the pretraining validation slice (corpus_val, for the eval loss and
checkpoint selection) is carved from train texts, so it shares no text with the held-out rows.

Writes data/mixed/{sft,rl,corpus,corpus_val}.jsonl, data/mixed/eval/<name>.jsonl (held-out rows of
every dataset in `mixture`) and metrics/mix.json.
"""
from pathlib import Path

from lancy import params as P
from lancy.catalog import CATALOG
from lancy.errors import LancyError, run_stage
from lancy.files import read_jsonl, write_json, write_jsonl
from lancy.harmonize import harmonize_rows
from lancy.mixing import experiment_tag, held_out_keys, remove_held_out, sample_corpus, sample_tasks, split_validation

PARAMS = ("seed", "mixture", "rl_mixture", "corpus", "mix", "prompts")
RAW, OUT = Path("data/raw"), Path("data/mixed")


def read_split(name: str, split: str) -> list[dict]:
    path = RAW / name / f"{split}.jsonl"
    if not path.exists():
        raise LancyError(f"{path} is missing; run `dvc repro download@{name}` first")
    return read_jsonl(path)


def main() -> None:
    p = P.load(PARAMS, catalog=CATALOG)
    raw = {name: {split: read_split(name, split) for split in ("train", "test")} for name in p.mixture}
    held_out = set().union(*(held_out_keys(CATALOG[name], raw[name]["test"]) for name in p.mixture))
    dropped = {name: {} for name in p.mixture}
    train, test, removed = {}, {}, {}
    for name in p.mixture:
        spec, template = CATALOG[name], p.prompts.get(name)
        kept, gone = remove_held_out(spec, raw[name]["train"], held_out)
        records, texts = harmonize_rows(spec, gone, "train", {}, template)
        removed[name] = {"tasks": len(records), "corpus": len(texts)}  # left out of the SFT/RL and corpus pools
        train[name] = harmonize_rows(spec, kept, "train", dropped[name], template)
        test[name] = harmonize_rows(spec, raw[name]["test"], "test", dropped[name], template)

    tasks = {name: p.mixture[name] for name in p.mixture if CATALOG[name].task != "corpus"}
    sft, rl, task_stats = sample_tasks(
        {n: train[n][0] for n in tasks}, tasks, p.mix.sft_rows, p.mix.rl_rows, p.seed, p.mix.upsample, p.rl_mixture
    )
    # The pretraining eval loss (and checkpoint choice) is on a twentieth of the corpus size, same weights,
    # set apart from the train texts: never on the held-out rows that `evaluate` reports.
    corpus_val, pools = split_validation(
        {n: train[n][1] for n in p.corpus}, p.corpus, p.mix.corpus_chars // 20, p.seed
    )
    corpus, corpus_stats = sample_corpus(pools, p.corpus, p.mix.corpus_chars, p.seed, p.mix.upsample)

    write_jsonl(OUT / "sft.jsonl", sft)
    write_jsonl(OUT / "rl.jsonl", rl)
    write_jsonl(OUT / "corpus.jsonl", corpus)
    write_jsonl(OUT / "corpus_val.jsonl", corpus_val)
    for name in p.mixture:
        records, texts = test[name]
        rows = records if CATALOG[name].task != "corpus" else [{"source": name, "text": t} for t in texts]
        write_jsonl(OUT / "eval" / f"{name}.jsonl", rows)

    write_json(Path("metrics/mix.json"), {
        "experiment": experiment_tag(tasks),
        "sft_rows": len(sft),
        "rl_rows": len(rl),
        "sources": {name: {**task_stats.get(name, {}), "dropped": dropped[name], "held_out_removed": removed[name]}
                    for name in p.mixture},
        "corpus": {"docs": len(corpus), "chars": sum(len(d["text"]) for d in corpus), "sources": corpus_stats,
                   "validation": {"docs": len(corpus_val), "chars": sum(len(d["text"]) for d in corpus_val)}},
    })
    print(f"{experiment_tag(tasks)}: {len(sft)} SFT rows, {len(rl)} RL prompts, {len(corpus)} corpus documents")


if __name__ == "__main__":
    run_stage(main)
