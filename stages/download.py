"""download: write data/raw/<name>/{train,test}/ (Parquet shards) for one dataset of the mixture.

Usage: python -m stages.download <name>
"""
import sys
from pathlib import Path

from lancy import params as P
from lancy.catalog import CATALOG
from lancy.errors import LancyError, run_stage
from lancy.sources import fetch, write_raw

PARAMS = ("seed", "data")


def main() -> None:
    p = P.load(PARAMS, catalog=CATALOG)
    name = sys.argv[1]
    if name not in CATALOG:
        raise LancyError(f"unknown dataset `{name}`; {P.unknown_dataset(name, CATALOG)}")
    splits = fetch(CATALOG[name], p.data, p.seed)
    write_raw(splits, Path("data/raw") / name)
    print(f"{name}: {len(splits['train'])} train, {len(splits['test'])} test rows ({p.data.source})")


if __name__ == "__main__":
    run_stage(main)
