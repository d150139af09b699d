"""A million-row local dataset through download, mix and tokenize: nothing holds its rows in memory.

The stages run in this process (their maps in two worker processes) while a thread samples the anonymous
proportional memory (what the processes allocated, each shared page once; not the pages of memory-mapped
Arrow files, which are page cache) of this process and its workers every 20 ms. The million rows as Python
objects would take several hundred MB; the data stages stay within a bounded working set above what the
process held before.
"""
import json
import os
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bench.scale import tree_memory
from lancy.tables import read_table

ROWS = 1_000_000
WORDS = ["market", "shares", "rose", "fell", "quarter", "profit", "loss", "bank", "rates", "growth"]


def _write_local(root):
    corpus = root / "local" / "wikitext"
    corpus.mkdir(parents=True)
    with pq.ParquetWriter(corpus / "train.parquet", pa.schema([("text", pa.string())])) as writer:
        for start in range(0, ROWS, 100_000):
            writer.write_table(pa.table({"text": [
                f" {WORDS[i % 10]} {WORDS[i // 10 % 10]} {WORDS[i // 100 % 10]} report number {i} .\n"
                for i in range(start, start + 100_000)
            ]}))
    pq.write_table(pa.table({"text": [f" held out line {i} about the {WORDS[i % 10]} ." for i in range(50)]}),
                   corpus / "test.parquet")
    sst2 = root / "local" / "sst2"
    sst2.mkdir()
    rows = [{"sentence": f"a {WORDS[i % 10]} film number {i}", "label": i % 2, "idx": i} for i in range(400)]
    for split, part in (("train", rows[:300]), ("validation", rows[300:])):
        pq.write_table(pa.Table.from_pylist(part), sst2 / f"{split}.parquet")


@pytest.mark.slow
def test_a_million_row_local_dataset_flows_without_materializing(tmp_path, monkeypatch, repo_root):
    from stages import download, mix, tokenize

    _write_local(tmp_path)
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params.update(num_proc=2, mixture={"sst2": 1.0, "wikitext": 0.0}, rl_mixture={}, corpus={"wikitext": 1.0})
    params["data"].update(source="local", train_rows=ROWS, test_rows=50,
                          local={name: str(tmp_path / "local" / name) for name in ("wikitext", "sst2")})
    params["mix"].update(sft_rows=200, rl_rows=16, corpus_chars=2_000_000)
    params["model"]["vocab_size"] = 512
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)

    before = _anonymous()
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _anonymous())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for name in ("wikitext", "sst2"):
            monkeypatch.setattr("sys.argv", ["download", name])
            download.main()
        mix.main()
        tokenize.main()
    finally:
        done.set()
        sampler.join()

    assert len(read_table(tmp_path / "data/raw/wikitext/train")) == ROWS
    corpus = read_table(tmp_path / "data/mixed/corpus")
    assert 2_000_000 <= sum(len(t) for t in corpus["text"]) < 2_000_100
    assert len(read_table(tmp_path / "data/tokenized/pretrain")) > 0
    sources = json.loads((tmp_path / "data/tokenized/pretrain_sources.json").read_text())
    assert list(sources) == ["wikitext"] and sources["wikitext"] > 0
    growth = (peak[0] - before) / 2**20
    assert growth < 250, f"the data stages' anonymous memory grew by {growth:.0f} MB for {ROWS:,} rows"


def _anonymous() -> int:
    """Anonymous PSS of this process and its map workers, in bytes."""
    return tree_memory(os.getpid())[1]
