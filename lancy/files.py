"""Reading and writing the pipeline's small files: JSON metrics, JSON Lines samples, atomically saved folders."""
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

from lancy.errors import LancyError


def require(*paths: Path) -> None:
    """Stop with one clear line when an input written by an earlier stage is missing."""
    for path in paths:
        if not Path(path).exists():
            raise LancyError(f"{path} is missing; run `dvc repro` to build it (an earlier stage writes it)")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a small JSON Lines file (the real samples in ../shared; pipeline data is Parquet, lancy.tables)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_dir(path: Path):
    """Yield a temporary sibling folder; it replaces `path` only if the block finishes.

    An interrupted stage therefore never leaves a half-written model where DVC would cache it.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
