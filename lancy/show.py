"""Look at the rows of a data table (a folder of Parquet shards), as JSON lines.

    python -m lancy.show data/mixed/sft                    # row count, columns, the first 5 rows
    python -m lancy.show data/raw/imdb/train -n 3 --offset 100 --columns text,label
    python -m lancy.show data/tokenized/sft --decode       # token ids as text, with the run's tokenizer
    python -m lancy.show data/results/sft --rev exp-name   # a folder as an experiment or commit left it (DVC cache)

The tables are also plain Parquet: `datasets.load_dataset("parquet", data_files="data/mixed/sft/*.parquet")`,
`pandas.read_parquet("data/mixed/sft")` or DuckDB read them as they are.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from lancy.errors import LancyError, run_stage
from lancy.tables import read_table

TOKENIZER = Path("data/tokenized/tokenizer")


def show(folder: str, rows: int = 5, offset: int = 0, columns: str = "", decode: bool = False, out=sys.stdout):
    table = read_table(Path(folder))
    if columns:
        missing = [c for c in columns.split(",") if c not in table.column_names]
        if missing:
            raise LancyError(f"{folder} has no column {', '.join(missing)}; "
                             f"its columns: {', '.join(table.column_names)}")
        table = table.select_columns(columns.split(","))
    print(f"{folder}: {len(table)} rows", file=out)
    for name, feature in table.features.items():
        print(f"  {name}: {feature}", file=out)
    tokenizer = None
    if decode:
        from lancy.tokenization import load_tokenizer

        tokenizer = load_tokenizer(str(TOKENIZER))
    for row in table.select(range(min(offset, len(table)), min(offset + rows, len(table)))):
        if tokenizer is not None and "input_ids" in row:
            row["text"] = tokenizer.decode(row["input_ids"])
        print(json.dumps(row, ensure_ascii=False, default=str), file=out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m lancy.show", description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("-n", "--rows", type=int, default=5)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--columns", default="", help="comma-separated column names")
    parser.add_argument("--decode", action="store_true", help=f"add the text of input_ids ({TOKENIZER})")
    parser.add_argument("--rev", help="read the folder as this experiment or commit left it, from the DVC cache")
    args = parser.parse_args()
    import datasets

    datasets.disable_progress_bars()
    if args.rev:
        from lancy.results import at_revision

        with tempfile.TemporaryDirectory(prefix="lancy-rev-") as tmp:
            show(str(at_revision(args.folder, args.rev, tmp)), args.rows, args.offset, args.columns, args.decode)
        return
    show(args.folder, args.rows, args.offset, args.columns, args.decode)


if __name__ == "__main__":
    run_stage(main)
