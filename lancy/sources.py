"""Where raw rows come from: the embedded synthetic stand-ins, the Hugging Face Hub, or local files.

Either way, `fetch` returns {"train": rows, "test": rows} in the dataset's real column layout (checked
against its catalog entry), and `write_raw` stores them as data/raw/<name>/{train,test}.jsonl.

- hub: `datasets.load_dataset(hub_id, config, revision=...)`, then a seeded sample of at most
  `train_rows` / `test_rows` rows per split (Hub splits are often sorted by label: never the head).
  Corpora marked `streaming` are streamed (seeded shuffle buffer) and stop after `train_rows` rows or
  `stream_chars` characters of text, whichever comes first: nothing is downloaded in full.
- local: the same, from `<folder>/<split>.{jsonl,json,csv,parquet}` (split names from the catalog entry, or
  `data.local_splits`), read by `datasets.load_dataset` with the matching builder.
- A dataset without a held-out split gets one: a seeded sample set apart from its train split.
"""
import os
from pathlib import Path

from lancy import embedded
from lancy.catalog import DatasetSpec, check_columns, to_text
from lancy.errors import LancyError
from lancy.files import write_jsonl

BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SHUFFLE_BUFFER = 10_000


def fetch(spec: DatasetSpec, data, seed: int) -> dict[str, list[dict]]:
    """Rows of both splits; `data` is the params `data` section."""
    if data.source == "embedded":
        if spec.name not in embedded.EMBEDDED_DATASETS:
            raise LancyError(
                f"dataset {spec.name} has no embedded stand-in; set `data.source: hub` or `local` "
                f"(embedded: {', '.join(embedded.EMBEDDED_DATASETS)})"
            )
        splits = {
            "train": embedded.generate(spec.name, "train", data.train_rows, seed),
            "test": embedded.generate(spec.name, "test", data.test_rows, seed),
        }
    elif data.source in ("hub", "local"):
        splits = _load(spec, data, seed)
    else:
        raise LancyError(f"params key `data.source` is {data.source!r}; use embedded, hub or local")
    for split, rows in splits.items():
        if rows:
            check_columns(spec, rows[0], f"{data.source} {split} split")
    return splits


def _load(spec: DatasetSpec, data, seed: int) -> dict[str, list[dict]]:
    train_split, test_split = spec.train_split, spec.test_split
    if data.source == "local" and spec.name in data.local_splits:
        train_split, _, test_split = data.local_splits[spec.name].partition(",")
        test_split = test_split or None
    if test_split is None:  # set held-out rows apart from the train split
        rows = _rows(spec, data, train_split, data.train_rows + data.test_rows, seed)
        return {"train": rows[data.test_rows:], "test": rows[: data.test_rows]}
    return {
        "train": _rows(spec, data, train_split, data.train_rows, seed),
        "test": _rows(spec, data, test_split, data.test_rows, seed),
    }


def _rows(spec: DatasetSpec, data, split: str, max_rows: int, seed: int) -> list[dict]:
    import datasets

    streaming = spec.streaming and data.source == "hub"
    try:
        if data.source == "local":
            builder, files = _local_files(spec, data.local[spec.name], split)
            dataset = datasets.load_dataset(builder, data_files=files, split="train")
        else:
            dataset = datasets.load_dataset(spec.hub_id, spec.config, split=split, revision=spec.revision,
                                            streaming=streaming)
    except LancyError:
        raise
    except Exception as error:  # the datasets library raises many types for "not reachable" or "no such split"
        raise LancyError(_load_error(spec, data.source, split, error)) from None
    images = [c for c, f in (dataset.features or {}).items() if isinstance(f, datasets.Image)]
    if images:  # lancy's models read text; images stay on the Hub
        dataset = dataset.remove_columns(images)
    if streaming:
        return _stream(spec, dataset.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER), max_rows, data.stream_chars)
    if len(dataset) > max_rows:
        dataset = dataset.shuffle(seed=seed).select(range(max_rows))
    return dataset.to_list()


def _stream(spec: DatasetSpec, dataset, max_rows: int, max_chars: int) -> list[dict]:
    """Rows of a streamed dataset until max_rows rows or max_chars characters of text."""
    rows, chars = [], 0
    for row in dataset:
        if len(rows) >= max_rows or chars >= max_chars:
            break
        rows.append(row)
        chars += len(to_text(spec, row) or "")
    return rows


def _local_files(spec: DatasetSpec, folder: str, split: str) -> tuple[str, dict]:
    """(datasets builder, data_files) of `<folder>/<split>.<ext>`."""
    candidates = [Path(folder) / f"{split}{ext}" for ext in BUILDERS]
    found = [path for path in candidates if path.exists()]
    if not found:
        raise LancyError(
            f"no {split} split file for dataset {spec.name} in {folder} (params key `data.local.{spec.name}`); "
            f"expected one of: {', '.join(p.name for p in candidates)} (other file stems: `data.local_splits`)"
        )
    return BUILDERS[found[0].suffix], {"train": str(found[0])}


def _load_error(spec: DatasetSpec, source: str, split: str, error: Exception) -> str:
    reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
    if source == "local":
        return f"could not read the {split} split of dataset {spec.name} from local files: {reason}"
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
    hint = "HF_HUB_OFFLINE is set; unset it or use `data.source: embedded`" if offline else (
        "check the network and the id (gated datasets need `hf auth login`), or use `data.source: embedded`"
    )
    config = spec.config or "default"
    return f"could not load {spec.hub_id} ({config}, split {split}) for dataset {spec.name}: {reason}; {hint}"


def write_raw(splits: dict[str, list[dict]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", rows)
