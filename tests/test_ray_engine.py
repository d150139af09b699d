"""`data.engine: ray` (lancy.ray_data): the mix and tokenize stages on a local 2-CPU Ray cluster write the same bytes
as with the datasets engine. The tables are written in small row groups and packed in small ranges, so every map
runs as several Ray tasks."""
import sys

import pytest
import yaml

import lancy.packing
import lancy.tables
from lancy import params as P
from lancy import ray_data
from lancy.errors import LancyError

DATASETS = ("imdb", "sst2", "gsm8k", "wikitext")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory, repo_root):
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(repo_root))  # the workers import lancy from this checkout
        patch.setenv("TOKENIZERS_PARALLELISM", "false")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _temp_dir=str(tmp_path_factory.mktemp("ray")))
        try:
            yield ray
        finally:
            ray.shutdown()


def _write_params(root, engine: str, **tokenize) -> None:
    params = {"seed": 3, "num_proc": 2, "data": {"source": "embedded", "train_rows": 900, "test_rows": 60,
                                                 "engine": engine},
              "mixture": {"imdb": 0.5, "sst2": 0.3, "gsm8k": 0.2, "wikitext": 0.0}, "rl_mixture": {},
              "corpus": {"wikitext": 0.6, "imdb": 0.4},
              "mix": {"sft_rows": 400, "rl_rows": 40, "corpus_chars": 150_000},
              "model": {"vocab_size": 512}, "tokenize": {"max_length": 64, **tokenize}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _outputs(root) -> dict[str, bytes]:
    files = [*(root / "data/mixed").rglob("*"), *(root / "data/tokenized").rglob("*"), *(root / "metrics").rglob("*")]
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(files) if path.is_file()}


def test_ray_engine_writes_the_same_bytes_as_datasets(ray_cluster, tmp_path, monkeypatch):
    from stages import download, mix, tokenize

    monkeypatch.setattr(lancy.tables, "WRITE_ROWS", 128)  # several row groups: several Ray tasks per map
    monkeypatch.setattr(lancy.tables, "MIN_ROWS_PER_PROCESS", 100)  # and two processes on the datasets side
    monkeypatch.setattr(lancy.packing, "BLOCKS_PER_RANGE", 200)  # several packing ranges
    monkeypatch.setattr(lancy.packing, "PACK_EXAMPLES", 150)
    outputs = {}
    for engine in ("datasets", "ray"):
        root = tmp_path / engine
        root.mkdir()
        monkeypatch.chdir(root)
        _write_params(root, engine)
        for name in DATASETS:
            monkeypatch.setattr(sys, "argv", ["download", name])
            download.main()
        mix.main()
        tokenize.main()
        outputs[engine] = _outputs(root)
        _write_params(root, engine, packing=False)  # one document / example per row
        tokenize.main()
        outputs[engine, "unpacked"] = _outputs(root)
    assert outputs["ray"].keys() == outputs["datasets"].keys()
    assert {"data/tokenized/sft/00000.parquet", "data/mixed/eval/gsm8k/00000.parquet"} <= outputs["ray"].keys()
    assert [k for k in outputs["ray"] if outputs["ray"][k] != outputs["datasets"][k]] == []
    assert [k for k in outputs["ray", "unpacked"] if outputs["ray", "unpacked"][k] !=
            outputs["datasets", "unpacked"][k]] == []
    assert outputs["ray", "unpacked"]["data/tokenized/sft/00000.parquet"] != outputs["ray"][
        "data/tokenized/sft/00000.parquet"]


def test_engine_ray_without_ray_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(LancyError, match=r"`data.engine` is ray but ray is not installed; `pip install"):
        ray_data.start(0)


def test_data_engine_must_be_datasets_or_ray(repo_root, tmp_path):
    assert P.Data().engine == "datasets"
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["data"]["engine"] = "spark"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(LancyError, match=r"params key `data.engine` is 'spark'; use one of: datasets, ray"):
        P.load_all(tmp_path / "params.yaml")
