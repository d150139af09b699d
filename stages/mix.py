"""mix: harmonize every dataset into one record shape, then sample the SFT/RL mixture and the corpus.

Writes data/mixed/{sft,rl,corpus,corpus_eval}.jsonl, data/mixed/eval/<name>.jsonl (held-out rows of
every dataset in `mixture`) and metrics/mix.json.
"""
from pathlib import Path

from lancy import params as P
from lancy.catalog import CATALOG
from lancy.errors import LancyError, run_stage
from lancy.files import read_jsonl, write_json, write_jsonl
from lancy.harmonize import harmonize_rows
from lancy.mixing import experiment_tag, sample_corpus, sample_tasks

PARAMS = ("seed", "mixture", "corpus", "mix", "prompts")
RAW, OUT = Path("data/raw"), Path("data/mixed")


def harmonize_split(name: str, split: str, dropped: dict, template: str | None) -> tuple[list[dict], list[str]]:
    path = RAW / name / f"{split}.jsonl"
    if not path.exists():
        raise LancyError(f"{path} is missing; run `dvc repro download@{name}` first")
    return harmonize_rows(CATALOG[name], read_jsonl(path), split, dropped, template)


def main() -> None:
    p = P.load(PARAMS)
    dropped = {name: {} for name in p.mixture}
    train = {name: harmonize_split(name, "train", dropped[name], p.prompts.get(name)) for name in p.mixture}
    test = {name: harmonize_split(name, "test", dropped[name], p.prompts.get(name)) for name in p.mixture}

    tasks = {name: p.mixture[name] for name in p.mixture if CATALOG[name].task != "corpus"}
    sft, rl, task_stats = sample_tasks(
        {n: train[n][0] for n in tasks}, tasks, p.mix.sft_rows, p.mix.rl_rows, p.seed, p.mix.upsample
    )
    corpus, corpus_stats = sample_corpus(
        {n: train[n][1] for n in p.corpus}, p.corpus, p.mix.corpus_chars, p.seed, p.mix.upsample
    )
    # Held-out text for the pretraining eval loss: a twentieth of the corpus size, same weights.
    corpus_eval, _ = sample_corpus({n: test[n][1] for n in p.corpus}, p.corpus, p.mix.corpus_chars // 20, p.seed, False)

    write_jsonl(OUT / "sft.jsonl", sft)
    write_jsonl(OUT / "rl.jsonl", rl)
    write_jsonl(OUT / "corpus.jsonl", corpus)
    write_jsonl(OUT / "corpus_eval.jsonl", corpus_eval)
    for name in p.mixture:
        records, texts = test[name]
        rows = records if CATALOG[name].task != "corpus" else [{"source": name, "text": t} for t in texts]
        write_jsonl(OUT / "eval" / f"{name}.jsonl", rows)

    write_json(Path("metrics/mix.json"), {
        "experiment": experiment_tag(tasks),
        "sft_rows": len(sft),
        "rl_rows": len(rl),
        "sources": {name: {**task_stats.get(name, {}), "dropped": dropped[name]} for name in p.mixture},
        "corpus": {"docs": len(corpus), "chars": sum(len(d["text"]) for d in corpus), "sources": corpus_stats},
    })
    print(f"{experiment_tag(tasks)}: {len(sft)} SFT rows, {len(rl)} RL prompts, {len(corpus)} corpus documents")


if __name__ == "__main__":
    run_stage(main)
