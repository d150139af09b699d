"""evaluate: one model (pretrain, sft or grpo) on the held-out rows of every dataset in the mixture.

Usage: python -m stages.evaluate <model>   Writes metrics/eval/<model>.json (every metric) and
metrics/eval/<model>_scores.json (the per-dataset plot rows).
"""
import sys
from pathlib import Path

from lancy import params as P
from lancy.catalog import CATALOG
from lancy.errors import LancyError, run_stage
from lancy.evaluation import answer_loss, evaluate_tasks, perplexity, scores
from lancy.files import require, write_json
from lancy.models import load_model
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
    model = load_model(f"models/{stage}", p.model.attention).eval()
    tokenizer = load_tokenizer(f"models/{stage}")
    results = {}
    for path in sorted(folder for folder in EVAL.iterdir() if folder.is_dir()):
        table = read_table(path)
        spec, rows = CATALOG[path.name], table.select(range(min(len(table), p.evaluate.max_rows))).to_list()
        if spec.task == "corpus":
            results[spec.name] = perplexity(model, tokenizer, [r["text"] for r in rows], p.evaluate.batch_size)
        else:  # evaluate.generate false (mixture-search proxies): the answer loss alone
            result = evaluate_tasks(model, tokenizer, spec.task, rows, p.evaluate.max_new_tokens,
                                    p.evaluate.batch_size) if p.evaluate.generate else {"rows": len(rows)}
            results[spec.name] = {**result, "answer_loss": answer_loss(model, tokenizer, rows, p.evaluate.batch_size)}
        print(f"{stage} on {spec.name}: {results[spec.name]}")
    write_json(Path(f"metrics/eval/{stage}.json"), results)
    write_json(Path(f"metrics/eval/{stage}_scores.json"), scores(results))


if __name__ == "__main__":
    run_stage(main)
