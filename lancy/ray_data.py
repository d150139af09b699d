"""The Ray Data engine of the data stages (`data.engine: ray`, docs/ray.md): the mix and tokenize maps as Ray tasks.

The row-wise maps (harmonizing raw rows, tokenizing documents, SFT examples and RL prompts) run as Ray Data
`map_batches` over the row groups of the stage's Parquet shards, one task per row group; the packing steps run
one task per range, over the same fixed ranges as `lancy.tables.map_ranges`. Each task applies the same batched
function as the `datasets` engine, 1,000 rows at a time, and returns Arrow rows of the same features. Results come
back in order (`preserve_order`) into an Arrow file of the stage's scratch folder, memory-mapped as a
`datasets.Dataset`: the rest of the stage is the same for both engines, and so are its outputs, byte for byte.

`start` starts a local Ray cluster of `num_proc` CPUs (0: all cores), or joins the cluster at `RAY_ADDRESS`.
Tasks read the shards and the scratch files by path: on a cluster of several machines the repository and TMPDIR
must be on a filesystem that every node mounts at the same path. ray is imported only here, and only when used.
"""
import itertools
import logging
import os
from collections.abc import Callable
from pathlib import Path

from lancy.errors import LancyError
from lancy.tables import scratch_dir

BATCH_ROWS = 1000  # rows per call of a batched function, as datasets' map
_calls = itertools.count()


def _ray():
    try:
        import ray
    except ImportError:
        raise LancyError("params key `data.engine` is ray but ray is not installed; "
                         "`pip install -r requirements-ray.txt` or set `data.engine: datasets`") from None
    return ray


def start(num_proc: int) -> None:
    """Ray for the stage's maps: the cluster already initialized in this process, the one at RAY_ADDRESS, or a local
    one of `num_proc` CPUs (0: all cores), which ray shuts down when the stage's process exits."""
    ray = _ray()
    if not ray.is_initialized():
        package = str(Path(__file__).resolve().parent)
        env = {"TOKENIZERS_PARALLELISM": "false"}  # the parallelism is the tasks, one thread each
        if os.environ.get("RAY_ADDRESS"):  # a running cluster: ship the lancy package to its workers
            ray.init(runtime_env={"py_modules": [package], "env_vars": env}, log_to_driver=False)
        else:  # a local cluster: its workers inherit this environment
            os.environ.update(env, PYTHONPATH=os.pathsep.join(
                p for p in (str(Path(package).parent), os.environ.get("PYTHONPATH")) if p))
            ray.init(num_cpus=num_proc or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no log lines per dataset run
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # results in input order: the same bytes as datasets
    context.enable_progress_bars = False


def map_table(folder: Path, function: Callable, features, keep: tuple[str, ...] = (), **kwargs):
    """`function` (a datasets batched-map function) over the rows of the Parquet shards of `folder`, as a Dataset of
    `features` (the `keep` columns of the input, as they are, and the function's outputs), in row order."""
    import pyarrow.parquet as pq
    from datasets import Features

    files = sorted(str(path) for path in Path(folder).resolve().glob("*.parquet"))  # the tasks' cwd is not ours
    if not files:
        raise LancyError(f"{folder} holds no Parquet shards; run `dvc repro` to build it (an earlier stage writes it)")
    pieces = [{"path": path, "row_group": group} for path in files
              for group in range(pq.ParquetFile(path).metadata.num_row_groups)]
    source = Features.from_arrow_schema(pq.read_schema(files[0]))
    return _run(pieces, _map_pieces, features, function=function, source=source, keep=keep, kwargs=kwargs)


def map_ranges(count: int, step: int, function: Callable, features, **kwargs):
    """`lancy.tables.map_ranges` on Ray: the rows `function(start, stop, **kwargs)` returns for the ranges [0, step),
    [step, 2 step), ... of range(count), in order. Datasets among kwargs travel as their files' paths."""
    pieces = [{"start": start} for start in range(0, count, step)]
    return _run(pieces, _map_range, features, function=function, count=count, step=step, kwargs=kwargs)


def pack_blocks(docs, block_size: int, num_proc: int = 0):
    """`lancy.packing.pack_blocks` on Ray: the same blocks, cut in the same ranges (num_proc: the cluster's CPUs)."""
    from lancy.packing import BLOCKS_PER_RANGE, _blocks, token_features
    from lancy.tables import list_lengths

    total = int(list_lengths(docs, "input_ids").sum())
    count = total // block_size
    blocks = map_ranges(count, BLOCKS_PER_RANGE, _blocks, token_features("input_ids"),
                        docs=docs.select_columns(["input_ids"]), block_size=block_size)
    return blocks, total - count * block_size


def pack_sft(examples, max_length: int, num_proc: int = 0):
    """`lancy.packing.pack_sft` on Ray: best-fit-decreasing bins over the same ranges of examples."""
    from lancy.packing import PACK_EXAMPLES, _pack_range, token_features

    return map_ranges(len(examples), PACK_EXAMPLES, _pack_range, token_features("input_ids", "labels", "position_ids"),
                      examples=examples.select_columns(["input_ids", "labels"]), max_length=max_length)


def document_rows(docs, max_length: int, num_proc: int = 0):
    """`lancy.packing.document_rows` on Ray: each document alone, cut at max_length, over ranges of documents."""
    import numpy as np

    from lancy.packing import token_features
    from lancy.tables import list_lengths

    lengths = list_lengths(docs, "input_ids")
    rows = map_ranges(len(docs), 10 * BATCH_ROWS, _cut_range, token_features("input_ids"),
                      docs=docs.select_columns(["input_ids"]), max_length=max_length)
    return rows, int(np.maximum(lengths[lengths > 1] - max_length, 0).sum())


def _cut_range(start: int, stop: int, docs, max_length: int) -> dict:
    from lancy.packing import _cut

    return _cut(docs[start:stop], max_length)


def _run(pieces: list[dict], task: Callable, features, **fn_kwargs):
    """One Ray task per piece (in order), their Arrow rows written to a scratch Arrow file and memory-mapped."""
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo

    ray = _ray()
    schema = features.arrow_schema
    path = os.path.join(scratch_dir(), f"ray-{os.getpid()}-{next(_calls)}.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        if pieces:
            dataset = ray.data.from_items(pieces, override_num_blocks=len(pieces)).map_batches(
                task, batch_size=1, batch_format="pyarrow", fn_kwargs={"features": features, **fn_kwargs})
            for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                writer.write_table(batch.select(schema.names).cast(schema))
    return Dataset.from_file(path, info=DatasetInfo(features=features))


def _map_pieces(piece, function: Callable, source, features, keep: tuple[str, ...], kwargs: dict):
    """A task: `function` over one row group of a Parquet shard, BATCH_ROWS rows at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.formatting import PythonFormatter

    row = piece.to_pylist()[0]
    table = pq.ParquetFile(row["path"]).read_row_group(row["row_group"])
    formatter, parts = PythonFormatter(features=source), []
    for start in range(0, table.num_rows, BATCH_ROWS):
        rows = table.slice(start, BATCH_ROWS)
        out = function(formatter.format_batch(rows), **kwargs)
        parts.append(_arrow({**{column: rows.column(column) for column in keep}, **out}, features))
    return pa.concat_tables(parts) if parts else features.arrow_schema.empty_table()


def _map_range(piece, function: Callable, count: int, step: int, features, kwargs: dict):
    """A task: `function` over one range of rows."""
    start = piece.column("start")[0].as_py()
    return _arrow(function(start, min(start + step, count), **kwargs), features)


def _arrow(columns, features):
    """A batched function's output (a dict of columns or an Arrow table) as an Arrow table of `features`."""
    import pyarrow as pa

    schema = features.arrow_schema
    if isinstance(columns, pa.Table):
        return columns.select(schema.names).cast(schema)
    return pa.table([pa.array(columns[name], type=schema.field(name).type) if not isinstance(
        columns[name], pa.ChunkedArray) else columns[name].cast(schema.field(name).type) for name in schema.names],
        schema=schema)
