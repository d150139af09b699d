"""lancy.sources: the hub code path served offline from a local datasets cache, streaming budgets, local files,
and the real samples in ../shared/data/real through the download, mix and tokenize stages."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from lancy.answers import final_number
from lancy.catalog import CATALOG
from lancy.errors import LancyError
from lancy.files import read_jsonl
from lancy.sources import fetch
from lancy.tables import read_table

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.exists(), reason=f"real samples not found at {REAL} (outside a dev checkout)")


def _data(**overrides) -> SimpleNamespace:
    values = dict(source="hub", train_rows=50, test_rows=10, dataset_test_rows={}, stream_chars=10**9, local={},
                  local_splits={})
    return SimpleNamespace(**{**values, **overrides})


def seed_hub_cache(cache: Path, hub_id: str, config: str, splits: dict[str, list[dict]]) -> None:
    """Lay rows out in the datasets cache exactly as an earlier online load_dataset(hub_id) leaves them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.packaged_modules.parquet.parquet import Parquet

    source = cache / "source"
    source.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, rows in splits.items():
        files[split] = str(source / f"{split}.parquet")
        pq.write_table(pa.Table.from_pylist(rows), files[split])
    name = hub_id.split("/")[-1]
    builder = Parquet(cache_dir=str(cache), dataset_name=name, config_name=config, data_files=files, hash="0")
    builder.download_and_prepare()
    prepared = cache / name
    (config_dir,) = prepared.iterdir()  # the builder names it <config>-<data files hash>; the Hub cache uses <config>
    config_dir.rename(prepared / config)
    prepared.rename(cache / hub_id.replace("/", "___"))


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import datasets

    cache = tmp_path / "hf_datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


def _lists(splits: dict) -> dict[str, list[dict]]:
    return {split: rows.to_list() for split, rows in splits.items()}


def _reviews(n: int, offset: int = 0) -> list[dict]:
    # Sorted by label, as the real IMDB splits are: a head would be all negative.
    return [{"text": f"review number {offset + i} " * 5, "label": int(i >= n // 2)} for i in range(n)]


def test_hub_path_loads_offline_from_the_datasets_cache(hub_cache):
    seed_hub_cache(hub_cache, "stanfordnlp/imdb", "plain_text", {"train": _reviews(400), "test": _reviews(100, 1000)})
    splits = fetch(CATALOG["imdb"], _data(), seed=3)
    assert len(splits["train"]) == 50 and len(splits["test"]) == 10
    assert set(splits["train"][0]) == {"text", "label"}
    labels = [row["label"] for row in splits["train"]]
    assert 10 < sum(labels) < 40, "a seeded sample of a label-sorted split has both labels"
    assert _lists(splits) == _lists(fetch(CATALOG["imdb"], _data(), seed=3))
    assert _lists(splits) != _lists(fetch(CATALOG["imdb"], _data(), seed=4))


def test_hub_dataset_without_test_split_gets_disjoint_held_out_rows(hub_cache):
    rows = [{"instruction": f"task {i}", "input": "", "output": f"answer {i}", "text": ""} for i in range(200)]
    seed_hub_cache(hub_cache, "gbharti/finance-alpaca", "default", {"train": rows})
    splits = fetch(CATALOG["finance_alpaca"], _data(), seed=0)
    train = {r["instruction"] for r in splits["train"]}
    test = {r["instruction"] for r in splits["test"]}
    assert len(train) == 50 and len(test) == 10 and not train & test


def test_streamed_corpus_stops_at_its_character_budget(hub_cache):
    rows = [{"text": f"{i:05d} " + "x" * 94} for i in range(2000)]  # 100 characters each
    seed_hub_cache(hub_cache, "PleIAs/common_corpus", "default", {"train": rows})
    assert CATALOG["common_corpus"].streaming
    splits = fetch(CATALOG["common_corpus"], _data(train_rows=1000, test_rows=5, stream_chars=2_000), seed=0)
    assert len(splits["train"]) + len(splits["test"]) == 20  # 2,000 characters of 100-character rows
    splits = fetch(CATALOG["common_corpus"], _data(train_rows=7, test_rows=3, stream_chars=10**9), seed=0)
    assert len(splits["train"]) == 7 and len(splits["test"]) == 3


def test_hub_id_not_cached_offline_is_one_clear_error(hub_cache):
    with pytest.raises(LancyError, match=r"could not load openai/gsm8k \(main, split train\) for dataset gsm8k"):
        fetch(CATALOG["gsm8k"], _data(), seed=0)


def test_columns_not_matching_the_catalog_name_dataset_and_column(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps({"review": "fine", "label": 1}) + "\n")
    (tmp_path / "test.jsonl").write_text(json.dumps({"review": "bad", "label": 0}) + "\n")
    with pytest.raises(LancyError, match=r"dataset imdb .* has no column `text`"):
        fetch(CATALOG["imdb"], _data(source="local", local={"imdb": str(tmp_path)}), seed=0)


def test_local_csv_and_parquet_files(tmp_path):
    import pandas as pd

    pd.DataFrame({"sentence": ["a fine film", "dull"], "label": [1, 0], "idx": [0, 1]}).to_csv(
        tmp_path / "train.csv", index=False)
    pd.DataFrame({"sentence": ["great"], "label": [1], "idx": [0]}).to_parquet(tmp_path / "validation.parquet")
    splits = fetch(CATALOG["sst2"], _data(source="local", local={"sst2": str(tmp_path)}), seed=0)
    assert sorted(r["sentence"] for r in splits["train"]) == ["a fine film", "dull"]
    assert splits["test"].to_list() == [{"sentence": "great", "label": 1, "idx": 0}]


@pytest.mark.parametrize("source", ["embedded", "local"])
def test_a_dataset_can_have_its_own_held_out_size(source, tmp_path):
    """`data.dataset_test_rows` sets one dataset's held-out rows; the others keep `data.test_rows`."""
    import pandas as pd

    pd.DataFrame({"sentence": [f"film {i}" for i in range(40)], "label": [i % 2 for i in range(40)],
                  "idx": range(40)}).to_parquet(tmp_path / "train.parquet")
    data = _data(source=source, train_rows=20, test_rows=5, dataset_test_rows={"sst2": 12},
                 local={"sst2": str(tmp_path)}, local_splits={"sst2": "train"})  # held-out rows set apart
    own = fetch(CATALOG["sst2"], data, seed=0)
    assert len(own["test"]) == 12 and len(own["train"]) == 20
    if source == "embedded":
        assert len(fetch(CATALOG["imdb"], data, seed=0)["test"]) == 5


def test_download_samples_a_large_local_split_by_seed(tmp_path, monkeypatch):
    """More local rows than `data.train_rows`: a seeded sample (never the label-sorted head), through the stage."""
    import pandas as pd

    from stages import download

    source = tmp_path / "imdb"
    source.mkdir()
    pd.DataFrame(_reviews(400)).to_json(source / "train.jsonl", orient="records", lines=True)
    pd.DataFrame(_reviews(100, 1000)).to_parquet(source / "test.parquet")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["download", "imdb"])

    def download_with(seed: int) -> dict[str, list[dict]]:
        data = {"source": "local", "train_rows": 50, "test_rows": 10, "local": {"imdb": str(source)}}
        params = {"seed": seed, "data": data, "mixture": {"imdb": 1}, "corpus": {"imdb": 1}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        download.main()
        return {split: read_table(tmp_path / "data/raw/imdb" / split).to_list() for split in ("train", "test")}

    first = download_with(seed=3)
    assert len(first["train"]) == 50 and len(first["test"]) == 10
    texts = [row["text"] for row in first["train"]]
    assert len(set(texts)) == 50 and set(texts) <= {row["text"] for row in _reviews(400)}
    assert 10 < sum(row["label"] for row in first["train"]) < 40, "not the head of a label-sorted file"
    assert download_with(seed=3) == first
    other = download_with(seed=4)
    assert other["train"] != first["train"] and other["test"] != first["test"]


def test_local_missing_split_file_is_one_clear_error(tmp_path):
    with pytest.raises(LancyError, match=r"no train split file for dataset imdb .* `data.local.imdb`"):
        fetch(CATALOG["imdb"], _data(source="local", local={"imdb": str(tmp_path)}), seed=0)


@needs_real
def test_gsm8k_extractor_recovers_the_number_after_hashes_on_every_real_row():
    for split in ("train", "test"):
        rows = read_jsonl(REAL / "gsm8k" / f"{split}.jsonl")
        assert len(rows) > 1000
        for row in rows:
            expected = row["answer"].split("####")[-1].strip().replace(",", "")
            assert final_number(row["answer"]) == expected, row["answer"]


REAL_LOCAL = {
    "imdb": "imdb", "sst2": "glue/sst2", "mrpc": "glue/mrpc", "gsm8k": "gsm8k", "wikitext": "wikitext2_raw",
}


@needs_real
def test_real_samples_through_download_mix_and_tokenize(tmp_path):
    """The real samples as `data.source: local`, through the stage scripts themselves."""
    for name in ("lancy", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source="local", train_rows=400, test_rows=50,
                          local={n: str(REAL / folder) for n, folder in REAL_LOCAL.items()},
                          local_splits={"wikitext": "validation,test"})
    params["mixture"] = {"imdb": 0.4, "sst2": 0.3, "mrpc": 0.1, "gsm8k": 0.2, "wikitext": 0.0}
    params["rl_mixture"] = {}
    params["mix"].update(sft_rows=300, rl_rows=20, corpus_chars=200_000)
    params["model"]["vocab_size"] = 2048
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    for args in [["stages.download", n] for n in params["mixture"]] + [["stages.mix"], ["stages.tokenize"]]:
        result = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]

    imdb = read_table(tmp_path / "data/raw/imdb/train").to_list()
    assert len(imdb) == 400 and "<br />" in "".join(r["text"] for r in imdb)  # real text, HTML kept
    mix = json.loads((tmp_path / "metrics/mix.json").read_text())
    assert mix["sft_rows"] == 300 and mix["sources"]["mrpc"]["rows"] == 30
    assert mix["experiment"] == "mix_imdb-40_sst2-30_mrpc-10_gsm8k-20"
    evaluation = read_table(tmp_path / "data/mixed/eval/gsm8k").to_list()
    assert all(r["answer"] == final_number(r["completion"]) for r in evaluation)
    tokenize = json.loads((tmp_path / "metrics/tokenize.json").read_text())
    assert tokenize["vocab_size"] == 2048 and tokenize["sft"]["examples"] == 300
    assert tokenize["sft"]["packing_efficiency"] > 0.9 and tokenize["pretrain"]["rows"] > 100


def test_local_parquet_is_read_one_row_group_at_a_time_into_the_builders_layout(tmp_path):
    """lancy reads local Parquet row group by row group (flat memory as the file grows); its Dataset has the rows,
    features and record batches of datasets' own Parquet builder, so the written shards are the same bytes."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lancy.sources import _parquet_rows
    from lancy.tables import write_table

    rows = [{"text": f"line {i} " * (i % 7), "label": i % 2} for i in range(5000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet", row_group_size=1300)
    ours = _parquet_rows(str(tmp_path / "train.parquet"))
    builder = datasets.load_dataset("parquet", data_files={"train": str(tmp_path / "train.parquet")}, split="train",
                                    cache_dir=str(tmp_path / "cache"))
    assert ours.features == builder.features and ours.data.table.equals(builder.data.table)
    assert [len(b) for b in ours.data.table.to_batches()] == [len(b) for b in builder.data.table.to_batches()]
    write_table(ours, tmp_path / "ours")
    write_table(builder, tmp_path / "builder")
    assert (tmp_path / "ours/00000.parquet").read_bytes() == (tmp_path / "builder/00000.parquet").read_bytes()


def test_one_local_parquet_file_for_both_splits_is_copied_once(tmp_path, monkeypatch):
    """`data.local_splits` may name one file for both splits: the second read reuses the first one's copy (never
    rewriting a file that the first split's Dataset has memory-mapped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lancy.tables import scratch_dir

    rows = [{"sentence": f"review {i}", "label": i % 2, "idx": i} for i in range(30)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "all.parquet")
    data = _data(source="local", local={"sst2": str(tmp_path)}, local_splits={"sst2": "all,all"}, train_rows=100)
    opened, parquet_file = [], pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda path, *a, **k: opened.append(path) or parquet_file(path, *a, **k))
    before = set(Path(scratch_dir()).glob("parquet-*.arrow"))
    splits = fetch(CATALOG["sst2"], data, seed=0)
    assert opened == [str(tmp_path / "all.parquet")]  # read once, for the first split
    assert len(set(Path(scratch_dir()).glob("parquet-*.arrow")) - before) == 1
    assert splits["train"].to_list() == rows  # under train_rows: every row, in order
    test = splits["test"].to_list()
    assert len(test) == 10 and all(row in rows for row in test)  # test_rows: a seeded sample of the same file
