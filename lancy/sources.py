"""Where raw rows come from: the embedded synthetic stand-ins or the Hugging Face Hub.

Either way, `fetch` returns {"train": rows, "test": rows} in the dataset's real column layout, and
`write_raw` stores them as data/raw/<name>/{train,test}.jsonl.
"""
import os
from pathlib import Path

from lancy import embedded
from lancy.catalog import DatasetSpec
from lancy.errors import LancyError
from lancy.files import write_jsonl
from lancy.harmonize import check_columns


def fetch(spec: DatasetSpec, source: str, train_rows: int, test_rows: int, seed: int) -> dict[str, list[dict]]:
    if source == "embedded":
        if spec.name not in embedded.EMBEDDED_DATASETS:
            raise LancyError(
                f"dataset {spec.name} has no embedded stand-in; set `data.source: hub` "
                f"(embedded: {', '.join(embedded.EMBEDDED_DATASETS)})"
            )
        splits = {
            "train": embedded.generate(spec.name, "train", train_rows, seed),
            "test": embedded.generate(spec.name, "test", test_rows, seed),
        }
    elif source == "hub":
        splits = {
            "train": _from_hub(spec, spec.train_split, train_rows, seed),
            "test": _from_hub(spec, spec.test_split, test_rows, seed),
        }
    else:
        raise LancyError(f"params key `data.source` is {source!r}; use embedded or hub")
    for split, rows in splits.items():
        if rows:
            check_columns(spec, rows[0], f"{source} {split} split")
    return splits


def _from_hub(spec: DatasetSpec, split: str, max_rows: int, seed: int) -> list[dict]:
    """A seeded sample of at most max_rows rows (Hub splits are often sorted by label: never take the head)."""
    import datasets

    try:
        dataset = datasets.load_dataset(spec.hub_id, spec.config, split=split)
    except Exception as error:  # the datasets library raises many types for "not reachable"
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = "HF_HUB_OFFLINE is set; unset it or use `data.source: embedded`" if offline else (
            "check the network and the id, or use `data.source: embedded`"
        )
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LancyError(
            f"could not load {spec.hub_id} ({spec.config or 'default'}, split {split}) for dataset {spec.name}: "
            f"{reason[:200]}; {hint}"
        ) from None
    if len(dataset) > max_rows:
        dataset = dataset.shuffle(seed=seed).select(range(max_rows))
    return [{column: row[column] for column in dataset.column_names} for row in dataset]


def write_raw(splits: dict[str, list[dict]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", rows)

