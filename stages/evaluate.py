"""evaluate: one model (pretrain, sft or grpo) on the held-out rows of every dataset in the mixture.

Usage: python -m stages.evaluate <model>   Every held-out row gets its answer loss (teacher-forced, cheap); the
first `evaluate.max_rows` of each dataset also get a generated answer and its score (the pretrained model's
only with `evaluate.generate_pretrain`). Writes
data/results/<model>/ (one row per held-out example or corpus window: lancy.results),
metrics/eval/<model>_details.json (every metric with its standard error over rows, counts, invalid rates),
metrics/eval/<model>.json (its headline scores, answer losses and perplexities: the top-level DVC metrics) and
metrics/eval/<model>_scores.json (the per-dataset plot rows).
"""
import sys
from pathlib import Path

from lancy import params as P
from lancy.catalog import CATALOG
from lancy.confinement import check as check_sandbox
from lancy.errors import LancyError, run_stage
from lancy.evaluation import (
    answer_losses,
    answer_rows,
    compact,
    corpus_summary,
    corpus_windows,
    scores,
    summarize,
)
from lancy.files import require, write_json
from lancy.models import load_model
from lancy.results import task_results, write_results
from lancy.tables import read_table
from lancy.tokenization import load_tokenizer

PARAMS = ("model.attention", "evaluate")
MODELS = ("pretrain", "sft", "grpo")
EVAL = Path("data/mixed/eval")


def main() -> None:
    p = P.load(PARAMS, catalog=CATALOG)
    stage = sys.argv[1]
    if stage not in MODELS:
        raise LancyError(f"unknown model `{stage}`; evaluate one of: {', '.join(MODELS)}")
    require(Path("models") / stage, EVAL)
    generating = p.evaluate.generate and (stage != "pretrain" or p.evaluate.generate_pretrain)
    if generating and any(CATALOG[path.name].task == "code" for path in EVAL.iterdir() if path.is_dir()):
        check_sandbox()  # code rows' unit tests run in lancy.sandbox: refused now, before any output
    model = load_model(f"models/{stage}", p.model.attention).eval()
    tokenizer = load_tokenizer(f"models/{stage}")
    metrics, tables, batch = {}, [], p.evaluate.batch_size
    for path in sorted(folder for folder in EVAL.iterdir() if folder.is_dir()):
        spec, rows = CATALOG[path.name], read_table(path).to_list()
        if spec.task == "corpus":
            windows = corpus_windows(model, tokenizer, [r["text"] for r in rows], batch)
            metrics[spec.name], table = corpus_summary(windows), task_results(spec.name, windows)
        else:  # every row's answer loss; generated answers for the first max_rows (none without `generating`)
            nll, tokens = answer_losses(model, tokenizer, rows, batch)
            generated = answer_rows(model, tokenizer, spec.task, rows[: p.evaluate.max_rows],
                                    p.evaluate.max_new_tokens, batch) if generating else {}
            metrics[spec.name] = summarize(spec.task, {**generated, "nll": nll, "tokens": tokens})
            table = task_results(spec.name, {"id": [r["id"] for r in rows], "nll": nll, "tokens": tokens,
                                             "reference": [r["answer"] or r["completion"] for r in rows], **generated})
        tables.append(table)
        print(f"{stage} on {spec.name}: {metrics[spec.name]}")
    write_results(tables, Path("data/results") / stage)
    write_json(Path(f"metrics/eval/{stage}_details.json"), metrics)
    write_json(Path(f"metrics/eval/{stage}.json"), compact(metrics))
    write_json(Path(f"metrics/eval/{stage}_scores.json"), scores(metrics))


if __name__ == "__main__":
    run_stage(main)
