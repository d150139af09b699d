"""The pipeline's data tables: folders of Parquet shards on disk, memory-mapped `datasets.Dataset`s in a stage.

Every data output (data/raw, data/mixed, data/tokenized) is a folder of Parquet shards (00000.parquet, ...),
each at most SHARD_BYTES of Arrow data. Parquet because every engine reads and writes it: datasets, pandas,
DuckDB, Spark, datatrove, Ray Data. To look at rows: `python -m lancy.show data/mixed/sft`.

`read_table` turns a folder into a Dataset: datasets converts the shards into Arrow files in a temporary folder
of the stage's own and memory-maps them, so a table of any size costs disk, not RAM. Batched `map`s write their
results next to them, and the folder goes when the stage ends (put it elsewhere with TMPDIR).

Parallel maps give the same bytes for any number of processes: `Dataset.map` with num_proc keeps row order, so a
row-wise function needs nothing more; a function whose output depends on which rows share a batch (packing)
runs through `map_ranges`, over ranges of a fixed size whatever the processes.
"""
import atexit
import gc
import hashlib
import itertools
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np

from lancy.errors import LancyError

SHARD_BYTES = 256 * 2**20
MIN_ROWS_PER_PROCESS = 5_000  # below this many rows per worker, forking one costs more than it saves
WRITE_ROWS = 10_000  # rows per Parquet row group
_scratch: str | None = None
_calls = itertools.count()


def scratch_dir() -> str:
    """This process's temporary folder for Arrow files, removed at exit."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="lancy-arrow-")
        owner = os.getpid()  # forked map workers share the folder; only its creator removes it
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(_scratch, ignore_errors=True))
    return _scratch


def processes(num_proc: int, rows: int) -> int | None:
    """Worker processes for a map over `rows` rows: `num_proc` (0: all cores), fewer for small tables;
    None (no workers) when one process is enough."""
    wanted = num_proc or os.cpu_count() or 1
    n = min(wanted, max(1, rows // MIN_ROWS_PER_PROCESS))
    if n == 1:
        return None
    gc.freeze()  # the forked workers then share the parent's objects instead of copying what the collector touches
    return n


def read_table(folder: Path):
    """The Parquet shards of `folder`, in order, as one memory-mapped Dataset."""
    import datasets

    files = sorted(str(path) for path in Path(folder).glob("*.parquet"))
    if not files:
        raise LancyError(f"{folder} holds no Parquet shards; run `dvc repro` to build it (an earlier stage writes it)")
    return datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=scratch_dir())


def write_table(dataset, folder: Path, shard_bytes: int = SHARD_BYTES) -> None:
    """`dataset` (through its indices mapping, if any) as Parquet shards in `folder`, replacing what was there.

    Rows are gathered WRITE_ROWS at a time (datasets' own writer gathers an indices mapping row by row); the
    schema carries the datasets features, so `read_table` gives back the same types."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    table, rows, count = dataset.data.table, row_numbers(dataset), len(dataset)
    shards = max(1, math.ceil(table.nbytes * count / max(1, table.num_rows) / shard_bytes))
    schema = dataset.features.arrow_schema
    batches = table.to_batches()  # zero-copy views of the memory-mapped chunks
    starts = np.cumsum([0] + [batch.num_rows for batch in batches])
    for index in range(shards):
        start, stop = index * count // shards, (index + 1) * count // shards
        with pq.ParquetWriter(folder / f"{index:05d}.parquet", schema) as writer:
            for first in range(start, stop, WRITE_ROWS):
                last = min(first + WRITE_ROWS, stop)
                part = table.slice(first, last - first) if rows is None else _gather(batches, starts, rows[first:last])
                writer.write_table(part.cast(schema))


def _gather(batches: list, starts: np.ndarray, rows: np.ndarray):
    """The given rows of a table split in record batches, in order. Arrow's Table.take would first concatenate
    each whole column (a copy of the table in memory); this takes from each batch the rows it holds."""
    import pyarrow as pa

    which = np.searchsorted(starts, rows, side="right") - 1
    order = np.argsort(which, kind="stable")
    ranked, owners = rows[order], which[order]
    bounds = [0, *(np.flatnonzero(np.diff(owners)) + 1), len(rows)]
    pieces = [batches[owners[a]].take(pa.array(ranked[a:b] - starts[owners[a]])) for a, b in pairwise(bounds)]
    return pa.Table.from_batches(pieces).take(pa.array(np.argsort(order)))


def map_ranges(count: int, step: int, function: Callable, num_proc: int, features, **kwargs):
    """A Dataset of the rows `function(start, stop, **kwargs)` returns for the ranges [0, step), [step, 2 step), ...
    of range(count), in order: the same for any num_proc, since the ranges do not depend on it."""
    from datasets import Dataset

    if count == 0:  # a map over no rows would return a table without the columns of `features`
        return Dataset.from_dict({name: [] for name in features}, features=features)
    starts = Dataset.from_dict({"start": np.arange(0, count, step, dtype=np.int64)})
    key = f"{function.__module__}.{function.__name__}-{count}-{step}-{sorted(kwargs)}-{os.getpid()}-{next(_calls)}"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:16]
    return starts.map(
        _range, batched=True, batch_size=1, remove_columns=["start"], features=features,
        fn_kwargs={"function": function, "count": count, "step": step, "kwargs": kwargs},
        num_proc=_at_most(processes(num_proc, count), len(starts)), new_fingerprint=fingerprint,
        cache_file_name=os.path.join(scratch_dir(), f"ranges-{fingerprint}.arrow"),
    )


def _at_most(workers: int | None, ranges: int) -> int | None:
    """No more workers than ranges (a worker with no range would only cost its start)."""
    return None if workers is None or ranges < 2 else min(workers, ranges)


def _range(batch: dict, function: Callable, count: int, step: int, kwargs: dict):
    start = int(batch["start"][0])
    return function(start, min(start + step, count), **kwargs)


def row_numbers(dataset) -> np.ndarray | None:
    """The rows of the underlying table (`dataset.data`) that the dataset's rows are: its indices mapping, if any."""
    return None if dataset._indices is None else dataset._indices.column(0).to_numpy().astype(np.int64)


def per_row(dataset, values: np.ndarray) -> np.ndarray:
    """Values computed for every row of the underlying table, for the dataset's own rows."""
    rows = row_numbers(dataset)
    return values if rows is None else values[rows]


def int_column(dataset, name: str) -> np.ndarray:
    """One integer (or bool) column of `dataset` as a numpy array."""
    import pyarrow as pa

    return per_row(dataset, _per_chunk(dataset.data.column(name), lambda chunk: chunk.cast(pa.int64())))


def list_lengths(dataset, name: str) -> np.ndarray:
    """The length of every list in column `name`, read from the Arrow offsets (no values are read)."""
    import pyarrow.compute as pc

    return per_row(dataset, _per_chunk(dataset.data.column(name), pc.list_value_length))


def text_lengths(dataset, name: str) -> np.ndarray:
    """The length in characters of every string in column `name` (0 for a missing one)."""
    import pyarrow.compute as pc

    return per_row(dataset, _per_chunk(dataset.data.column(name), pc.utf8_length))


def _per_chunk(column, compute) -> np.ndarray:
    parts = [compute(chunk).fill_null(0).to_numpy(zero_copy_only=False) for chunk in column.chunks]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def flat_values(dataset, name: str):
    """All the values of list column `name`, end to end, as one pyarrow ChunkedArray (zero-copy on the map)."""
    import pyarrow as pa

    return pa.chunked_array([chunk.flatten() for chunk in dataset.data.column(name).chunks],
                            type=dataset.data.column(name).type.value_type)


def values_present(dataset, name: str, values) -> set:
    """Which of `values` occur in list column `name`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = flat_values(dataset, name)
    return set(pc.unique(flat.filter(pc.is_in(flat, value_set=pa.array(list(values), flat.type)))).to_pylist())


def rng(*key) -> np.random.Generator:
    """A numpy generator seeded from a key (seed, what for, which dataset): independent streams per key."""
    digest = hashlib.sha256("-".join(map(str, key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
