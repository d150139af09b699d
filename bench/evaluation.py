"""The evaluate stage's model work on a trained model: answer losses and greedy generation, per dataset.

    python -m bench.evaluation [--model models/sft] [--runs 3] [--module path/to/other/evaluation.py]

Times lancy.evaluation's `answer_losses` and `answer_rows` on every task dataset of data/mixed/eval (run
`dvc repro` first), as the evaluate stage calls them with params.yaml's `evaluate` settings. --module times
another implementation side by side (e.g. `git show <commit>:lancy/evaluation.py`), alternating the two so
that machine noise hits both alike, checks that both give the same scores, and gives the mean paired
difference of the totals with its 95% bootstrap interval (lancy.stats.paired, each pair of runs a row).
"""
import argparse
import time
from pathlib import Path

import numpy as np

from bench import other_implementation
from lancy import evaluation
from lancy import params as P
from lancy.catalog import CATALOG
from lancy.models import load_model
from lancy.stats import paired
from lancy.tables import read_table
from lancy.tokenization import load_tokenizer


def run(module, model, tokenizer, tables: dict, e) -> tuple[float, dict]:
    """Seconds of answer losses and generation over every dataset, and the scores generated."""
    start, scores = time.perf_counter(), {}
    for name, (task, rows) in tables.items():
        module.answer_losses(model, tokenizer, rows, e.batch_size)
        scores[name] = module.answer_rows(model, tokenizer, task, rows[: e.max_rows], e.max_new_tokens,
                                          e.batch_size)["score"]
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/sft")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--module", help="another evaluation.py to time side by side")
    args = parser.parse_args()
    e = P.load(("evaluate",)).evaluate
    model, tokenizer = load_model(args.model).eval(), load_tokenizer(args.model)
    tables = {path.name: (CATALOG[path.name].task, read_table(path).to_list())
              for path in sorted(Path("data/mixed/eval").iterdir())
              if path.is_dir() and CATALOG[path.name].task != "corpus"}
    modules = {"lancy": evaluation}
    if args.module:
        modules["other"] = other_implementation(args.module)
    times = {label: [] for label in modules}
    for _ in range(args.runs):
        scores = {}
        for label, module in modules.items():
            seconds, scores[label] = run(module, model, tokenizer, tables, e)
            times[label].append(seconds)
        if "other" in scores:
            same = sum(a == b for name in tables for a, b in zip(scores["lancy"][name], scores["other"][name],
                                                                      strict=True))
            print(f"rows scored alike: {same} of {sum(len(s) for s in scores['lancy'].values())}")
    for label, values in times.items():
        print(f"{label:6s} " + " ".join(f"{v:.1f}" for v in values) + f" s ({args.runs} runs, {len(tables)} datasets)")
    if "other" in times:
        d = paired(np.array(times["lancy"]), np.array(times["other"]))
        print(f"lancy - other: mean {d.difference:+.1f} s, 95% interval [{d.low:+.1f}, {d.high:+.1f}]")


if __name__ == "__main__":
    main()
