"""python -m lancy.show: a table's rows as JSON lines, and one clear line for a wrong column or folder."""
import io
import json

import pytest
from datasets import Dataset

from lancy.errors import LancyError
from lancy.show import show
from lancy.tables import write_table


def test_show_prints_count_types_and_the_asked_rows(tmp_path):
    write_table(Dataset.from_dict({"prompt": [f"p{i}" for i in range(10)], "labels": [["a", "b"]] * 10}), tmp_path)
    out = io.StringIO()
    show(str(tmp_path), rows=2, offset=3, columns="prompt", out=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"{tmp_path}: 10 rows" and lines[1].startswith("  prompt:")
    assert [json.loads(line) for line in lines[2:]] == [{"prompt": "p3"}, {"prompt": "p4"}]


def test_show_names_the_missing_column_and_folder(tmp_path):
    write_table(Dataset.from_dict({"prompt": ["p"]}), tmp_path / "t")
    with pytest.raises(LancyError, match="no column answer; its columns: prompt"):
        show(str(tmp_path / "t"), columns="answer")
    with pytest.raises(LancyError, match="holds no Parquet shards"):
        show(str(tmp_path / "missing"))
