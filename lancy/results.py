"""Per-row held-out results: what `evaluate` writes for each model, and how any experiment's are read back.

data/results/<model>/ is a Parquet table (a DVC-cached output, like every data output) with one row per held-out
example of each task dataset and one per window of each corpus:

    dataset    the catalog name
    id         a stable row id: the hash of the row's normalized held-out text (lancy.mixing.text_key), the same
               in every experiment that evaluates that text; for a corpus, the hash of the window's tokens
    reference  the reference answer (null for corpus windows)
    generated  the greedy answer (null beyond `evaluate.max_rows`, for the pretrained model
               without `evaluate.generate_pretrain`, or with `evaluate.generate: false`)
    score      1 right / 0 wrong (token F1 for QA; null where nothing was generated or a code row has no tests)
    invalid    no label word or option letter, or code that does nothing (null where it does not apply)
    nll        the summed loss (nats) of the reference completion's tokens and EOS given the prompt (of the
               window's tokens, for a corpus): the answer loss of the row is nll / tokens
    tokens     how many tokens nll sums over

Every metric of metrics/eval/<model>.json is a ratio of sums over these rows (lancy.stats): `lancy.compare`
recomputes them and pairs two experiments' rows by (dataset, id).

    python -m lancy.show data/results/sft                       # the workspace's rows
    python -m lancy.show data/results/sft --rev <experiment>    # an experiment's, from the DVC cache
"""
import tempfile
from pathlib import Path

import pyarrow as pa

from lancy.errors import LancyError

SCHEMA = pa.schema([("dataset", pa.string()), ("id", pa.string()), ("reference", pa.string()),
                    ("generated", pa.string()), ("score", pa.float64()), ("invalid", pa.bool_()),
                    ("nll", pa.float64()), ("tokens", pa.int64())])


def task_results(dataset: str, columns: dict[str, list]) -> pa.Table:
    """One dataset's rows: `columns` by name (a column shorter than `id`, such as `generated` for the first
    max_rows rows, is null after its end; a missing one is null throughout)."""
    n = len(columns["id"])
    data = {"dataset": [dataset] * n}
    for field in SCHEMA.names[1:]:
        values = list(columns.get(field, []))
        data[field] = values + [None] * (n - len(values))
    return pa.table(data, schema=SCHEMA)


def write_results(tables: list[pa.Table], folder: Path) -> None:
    """The datasets' rows as one Parquet shard in `folder`, replacing what was there."""
    import shutil

    import pyarrow.parquet as pq

    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pq.write_table(pa.concat_tables(tables) if tables else SCHEMA.empty_table(), folder / "00000.parquet")


def at_revision(folder: str, rev: str, into: str | None = None) -> Path:
    """A local copy of a DVC-tracked folder as an experiment or commit `rev` recorded it, from the DVC cache (a
    remote's outputs need `dvc pull` or `dvc exp pull` first). Copied into `into`, or a new temporary folder."""
    from dvc.api import DVCFileSystem

    target = Path(into or tempfile.mkdtemp(prefix="lancy-rev-")) / Path(folder).name
    try:
        DVCFileSystem(".", rev=rev).get(str(folder), str(target), recursive=True)
    except Exception as error:  # dvc raises many kinds: unknown revision, missing path, output not in the cache
        raise LancyError(f"cannot read {folder} at `{rev}` from the DVC cache ({type(error).__name__}: {error}); "
                         f"`dvc exp show` lists experiments, and `dvc exp pull` / `dvc pull` fetch their outputs; "
                         f"a commit whose dvc.lock was never reproduced has none (commit the lock `dvc repro` wrote)"
                         ) from error
    return target


def read_results(model: str, rev: str | None = None) -> pa.Table:
    """data/results/<model> of the workspace, or of experiment or commit `rev` (from the DVC cache)."""
    import pyarrow.parquet as pq

    folder = Path("data/results") / model
    if rev is not None:
        with tempfile.TemporaryDirectory(prefix="lancy-rev-") as tmp:
            return pq.read_table(at_revision(str(folder), rev, tmp))
    if not folder.exists():
        raise LancyError(f"{folder} is missing; run `dvc repro` (evaluate@{model} writes it)")
    return pq.read_table(folder)
