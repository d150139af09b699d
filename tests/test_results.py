"""lancy.results: the per-row table evaluate writes, and a clear line when a revision's rows cannot be read."""
import pyarrow.parquet as pq
import pytest

from lancy.errors import LancyError
from lancy.results import SCHEMA, at_revision, read_results, task_results, write_results


def test_rows_beyond_the_generated_ones_are_null_and_the_table_round_trips(tmp_path):
    imdb = task_results("imdb", {"id": ["a", "b", "c"], "reference": ["positive"] * 3, "generated": [" positive"],
                                 "score": [1.0], "invalid": [False], "nll": [0.1, 0.2, 0.3], "tokens": [2, 2, 2]})
    wiki = task_results("wikitext", {"id": ["w0"], "nll": [500.0], "tokens": [255]})
    assert imdb.column("generated").to_pylist() == [" positive", None, None]
    assert imdb.column("score").to_pylist() == [1.0, None, None] and imdb.schema == SCHEMA
    assert wiki.column("reference").to_pylist() == [None] and wiki.column("dataset").to_pylist() == ["wikitext"]
    write_results([imdb, wiki], tmp_path / "data/results/sft")
    table = pq.read_table(tmp_path / "data/results/sft")
    assert table.num_rows == 4 and table.column("nll").to_pylist() == [0.1, 0.2, 0.3, 500.0]


def test_missing_results_and_unknown_revisions_are_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LancyError, match=r"data/results/sft is missing; run `dvc repro`"):
        read_results("sft")
    with pytest.raises(LancyError, match=r"cannot read data/results/sft at `no-such-exp` from the DVC cache"):
        at_revision("data/results/sft", "no-such-exp", str(tmp_path))
