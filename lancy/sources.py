"""Where raw rows come from: the embedded synthetic stand-ins, the Hugging Face Hub, or local files.

Either way, `fetch` returns {"train": Dataset, "test": Dataset} in the dataset's real column layout (checked
against its catalog entry), and `write_raw` stores them as data/raw/<name>/{train,test}/ Parquet shards.
Rows are never gathered in Python lists (the embedded stand-ins aside, which are small by construction).

- hub: `datasets.load_dataset(hub_id, config, revision=...)`, then a seeded sample of at most
  `train_rows` / `test_rows` (or the dataset's `dataset_test_rows`) rows per split (Hub splits are often
  sorted by label: never the head), drawn by index: a permutation of the row numbers, the rows themselves
  stay memory-mapped until written.
  Corpora marked `streaming` are streamed (seeded shuffle buffer) and stop after `train_rows` rows or
  `stream_chars` characters of text, whichever comes first: nothing is downloaded in full, and the rows go to
  Arrow files as they arrive.
- local: the same, from `<folder>/<split>.{jsonl,json,csv,parquet}` (split names from the catalog entry, or
  `data.local_splits`), read into this stage's temporary Arrow folder: JSON and CSV by `datasets.load_dataset`
  with the matching builder, Parquet one row group at a time (`_parquet_rows`: flat memory).
- A dataset without a held-out split gets one: a seeded sample set apart from its train split.
"""
import os
from pathlib import Path

from lancy import embedded
from lancy.catalog import DatasetSpec, check_columns, to_text
from lancy.errors import LancyError
from lancy.tables import scratch_dir, write_table

BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SHUFFLE_BUFFER = 10_000


def fetch(spec: DatasetSpec, data, seed: int) -> dict:
    """Both splits as Datasets; `data` is the params `data` section."""
    from datasets import Dataset

    held_out = held_out_rows(data, spec.name)
    if data.source == "embedded":
        if spec.name not in embedded.EMBEDDED_DATASETS:
            raise LancyError(
                f"dataset {spec.name} has no embedded stand-in; set `data.source: hub` or `local` "
                f"(embedded: {', '.join(embedded.EMBEDDED_DATASETS)})"
            )
        splits = {
            "train": Dataset.from_list(embedded.generate(spec.name, "train", data.train_rows, seed)),
            "test": Dataset.from_list(embedded.generate(spec.name, "test", held_out, seed)),
        }
    elif data.source in ("hub", "local"):
        splits = _load(spec, data, held_out, seed)
    else:
        raise LancyError(f"params key `data.source` is {data.source!r}; use embedded, hub or local")
    for split, rows in splits.items():
        if len(rows):
            check_columns(spec, rows[0], f"{data.source} {split} split")
    return splits


def held_out_rows(data, name: str) -> int:
    """Rows kept of a dataset's held-out split: its `data.dataset_test_rows` entry, else `data.test_rows`."""
    return data.dataset_test_rows.get(name, data.test_rows)


def _load(spec: DatasetSpec, data, held_out: int, seed: int) -> dict:
    train_split, test_split = spec.train_split, spec.test_split
    if data.source == "local" and spec.name in data.local_splits:
        train_split, _, test_split = data.local_splits[spec.name].partition(",")
        test_split = test_split or None
    if test_split is None:  # set held-out rows apart from the train split
        rows = _rows(spec, data, train_split, data.train_rows + held_out, seed)
        held_out = min(held_out, len(rows))
        return {"train": rows.select(range(held_out, len(rows))), "test": rows.select(range(held_out))}
    return {
        "train": _rows(spec, data, train_split, data.train_rows, seed),
        "test": _rows(spec, data, test_split, held_out, seed),
    }


def _rows(spec: DatasetSpec, data, split: str, max_rows: int, seed: int):
    import datasets

    streaming = spec.streaming and data.source == "hub"
    try:
        if data.source == "local":
            builder, files = _local_files(spec, data.local[spec.name], split)
            dataset = (_parquet_rows(files["train"]) if builder == "parquet" else
                       datasets.load_dataset(builder, data_files=files, split="train", cache_dir=scratch_dir()))
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
        shuffled = dataset.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
        return datasets.Dataset.from_generator(
            _stream,
            gen_kwargs={"spec": spec, "dataset": shuffled, "max_rows": max_rows, "max_chars": data.stream_chars},
            features=dataset.features, cache_dir=scratch_dir(),  # the budgets are in the key: no stale rows
            fingerprint=f"stream-{spec.name}-{split}-{seed}-{max_rows}-{data.stream_chars}",
        )
    if len(dataset) > max_rows:  # a seeded permutation of the row numbers; the rows stay on disk
        dataset = dataset.shuffle(seed=seed).select(range(max_rows))
    return dataset


def _parquet_rows(path: str):
    """A local Parquet file as a memory-mapped Dataset, copied one row group at a time: the datasets Parquet
    builder's scan held memory in proportion to the file (wikitext, 10M to 100M characters: 124 to 214 MB);
    this stays at one row group's worth (docs/performance.md, Data stages at scale)."""
    import hashlib

    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    stat = os.stat(path)
    key = hashlib.sha256(f"{os.path.realpath(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    arrow = Path(scratch_dir()) / f"parquet-{key}.arrow"
    if not arrow.exists():  # a file read twice (two splits named alike) is copied once: never over a mapped copy
        with pq.ParquetFile(path) as source, pa.OSFile(f"{arrow}.tmp", "wb") as sink:
            with pa.ipc.new_stream(sink, source.schema_arrow) as writer:
                for group in range(source.num_row_groups):  # in the builder's record batches: the same Parquet bytes
                    writer.write_table(source.read_row_group(group),
                                       max_chunksize=datasets.config.DEFAULT_MAX_BATCH_SIZE)
        os.replace(f"{arrow}.tmp", arrow)
    return datasets.Dataset.from_file(str(arrow))


def _stream(spec: DatasetSpec, dataset, max_rows: int, max_chars: int):
    """Rows of a streamed dataset until max_rows rows or max_chars characters of text, as they arrive."""
    rows, chars = 0, 0
    for row in dataset:
        if rows >= max_rows or chars >= max_chars:
            break
        yield row
        rows += 1
        chars += len(to_text(spec, row) or "")


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


def write_raw(splits: dict, out_dir: Path) -> None:
    for split, rows in splits.items():
        write_table(rows, Path(out_dir) / split)
