"""The benchmark code itself: equal real tokens per step, efficiencies that can be checked by hand, the GPU
script's smoke run on the CPU."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset

from bench.throughput import bench_packing, load_mixture, token_batches

REPO = Path(__file__).resolve().parents[1]


def _example(n: int) -> dict:
    return {"input_ids": list(range(1, n + 1)), "labels": [-100] + list(range(2, n + 1))}


def test_token_batches_hold_the_budget():
    rows = [_example(n) for n in (100, 300, 50, 400, 200, 10)]
    batches = token_batches(rows, 400)
    assert [[len(r["input_ids"]) for r in b] for b in batches] == [[100, 300], [50, 400]]  # [200, 10] is short
    assert all(sum(len(r["input_ids"]) for r in b) >= 400 for b in batches)


def test_packing_efficiencies_by_hand():
    examples = Dataset.from_list([_example(n) for n in (500, 12, 250, 250, 12)])
    docs = Dataset.from_dict({"input_ids": [[1] * 1000 + [0], [2] * 26 + [0]]})  # EOS appended, as encode_docs does
    result = bench_packing(examples, docs, batch_size=8)
    real = 500 + 12 + 250 + 250 + 12
    assert result["sft_packed_efficiency"] == real / (2 * 512)  # [500, 12] and [250, 250, 12]
    assert result["sft_padded_efficiency"] == real / (5 * 500)  # one batch padded to its longest row
    assert result["pretrain_block_efficiency"] == 1024 / 1028  # 1,028 tokens with EOS, two full blocks


def test_mixture_is_seventy_thirty_and_seeded():
    records, _ = load_mixture(100)
    again, _ = load_mixture(100)
    assert records.column_names == ["source", "prompt", "completion"] and records.to_list() == again.to_list()
    assert sorted(records["source"]) == ["imdb"] * 70 + ["sst2"] * 30
    assert records["source"][:30].count("sst2") not in (0, 30)  # shuffled together, not one source after the other


@pytest.mark.slow
def test_gpu_script_smoke_run_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, str(REPO / "bench/gpu_sft.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(out.read_text())
    cases = results["cases"]
    assert {(c["packed"], c["attention"]) for c in cases} == {(True, "sdpa"), (False, "sdpa")}
    assert all(c["real_tokens_per_s"] > 0 for c in cases)
    assert results["packing_check"]["sdpa"] < 1e-4 and "6 N T" in results["flops_formula"]


def test_gpu_script_stops_when_packed_examples_attend_to_each_other(monkeypatch):
    """A collator that lets examples see each other (here: a KV cache, so the position restarts are ignored)."""
    from bench import gpu_sft

    collate = gpu_sft.packing.packed_collator
    monkeypatch.setattr(gpu_sft.packing, "packed_collator",
                        lambda model, pad: lambda rows: {**collate(model, pad)(rows), "use_cache": True})
    with pytest.raises(SystemExit, match="packing check failed under sdpa"):
        gpu_sft.check_packing(gpu_sft.model_config(smoke=True), "sdpa", "cpu", row_length=1024)


@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_gpu_script_checks_liger_against_the_models_own_loss(scale, monkeypatch):
    """A stand-in for Liger's patch (no Triton here): an exact one passes, one that changes the loss stops it."""
    import sys
    import types

    from transformers.models.qwen2 import modeling_qwen2

    from bench import gpu_sft

    def apply_liger_kernel_to_qwen2():
        norm = modeling_qwen2.Qwen2RMSNorm.forward
        monkeypatch.setattr(modeling_qwen2.Qwen2RMSNorm, "forward", lambda self, x: norm(self, x) * scale)

    fake = types.ModuleType("liger_kernel.transformers")
    fake.apply_liger_kernel_to_qwen2 = apply_liger_kernel_to_qwen2
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", fake)
    config = gpu_sft.model_config(smoke=True)
    if scale == 1.0:
        assert gpu_sft.check_liger(config, "cpu") == 0.0
    else:
        with pytest.raises(SystemExit, match="Liger check failed"):
            gpu_sft.check_liger(config, "cpu")


def test_scale_params_are_valid(tmp_path):
    """The scale benchmark's params.yaml passes lancy's validation, dataset names included (a default key that
    names a dataset it leaves out, such as `rl_mixture`, once stopped `make bench` at its first stage)."""
    from bench.scale import params
    from lancy.catalog import CATALOG
    from lancy.params import load_all

    params(tmp_path, chars=10**6, rows=1000, num_proc=1)
    loaded = load_all(tmp_path / "params.yaml", CATALOG)
    assert set(loaded.mixture) == {"sst2", "wikitext"} and loaded.data.source == "local"


def test_scale_table_checks_each_target():
    """bench/scale.py's verdicts from its results: memory ratios, the 1B excess, time growth, processes, raw ratio."""
    from bench.scale import BILLION, table

    def stages(anon, wall):
        return {name: {"peak_anon_mb": anon, "peak_rss_mb": anon * 2, "wall_s": wall}
                for name in ("download", "mix", "tokenize")}

    results = {"sizes": [{"chars": 10**7, "stages": stages(100, 10)}, {"chars": 10**8, "stages": stages(160, 130)},
                         {"chars": BILLION, "stages": stages(100 + 3 * 1024, 999)}],
               "processes": {"one_s": 90, "two_s": 60, "speedup": 1.5},
               "encode": {"process_speedup": 1.8, "ratio": 0.9, "lancy_tokens_per_s": 9e5, "raw_tokens_per_s": 1e6}}
    verdicts = {name: met for name, _, _, met in table(results)}
    assert not verdicts["mix: peak memory 100M / 10M chars"]  # 1.6x > 1.5x
    assert not verdicts["mix: peak memory 1B - 10M chars"]  # 3 GiB above
    assert not verdicts["tokenize: time 100M / 10M chars"]  # 13x > 12x
    assert verdicts["tokenize + pack, 2 processes / 1"] and verdicts["tokenize + pack / raw encode_batch"]


def test_head_bench_times_the_three_heads_on_the_same_loss():
    """bench.throughput.bench_head_by_share: the model's own head, SFT's fused one and pretraining's chunked loss
    start from the same loss (what makes their timings comparable)."""
    from bench.throughput import bench_head_by_share

    result = bench_head_by_share(shares=(1.0,), steps=1, vocab_size=512)["1.0"]
    assert all(result[name] > 0 for name in ("own", "fused", "chunked"))
    assert result["chunked_loss_gap"] < 1e-6 and abs(result["fused_first_loss"] / result["own_first_loss"] - 1) < 1e-6
