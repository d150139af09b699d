"""The CPU kernels lancy runs (lancy.cpu_kernels): AVX2 on every x86-64 machine that has it, so that a seeded run
trains the same weights on AVX2 and AVX-512 machines."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lancy.cpu_kernels import SETTINGS, cpu_flags, has_avx2, portable_settings

REPO = Path(__file__).resolve().parents[1]
needs_avx2 = pytest.mark.skipif(not has_avx2(cpu_flags()),
                                reason="the CPU has no AVX2 and FMA (or no /proc/cpuinfo): native kernels")


def test_avx2_kernels_only_where_the_cpu_has_them():
    assert portable_settings({"sse2", "avx", "avx2", "fma", "avx512f"}, {}) == SETTINGS
    assert portable_settings({"sse2", "avx", "avx2"}, {}) == {}  # no FMA: ATen's AVX2 kernels need it
    assert portable_settings({"fp", "asimd"}, {}) == {}  # ARM


def test_a_variable_the_user_set_is_kept():
    assert portable_settings({"avx2", "fma"}, {"MKL_CBWR": "AUTO"}) == {"ATEN_CPU_CAPABILITY": "avx2"}


def test_cpu_flags_are_the_first_cpus(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "fma"}
    assert cpu_flags(tmp_path / "missing") == set()


def _in_a_stage_process(code: str, **env) -> str:
    """What `code` prints in a fresh process that imports a stage module first, as `python -m stages.<name>` does."""
    environ = {k: v for k, v in os.environ.items() if k not in SETTINGS} | env
    return subprocess.run([sys.executable, "-c", f"import stages.download\n{code}"], env=environ, cwd=REPO,
                          check=True, capture_output=True, text=True).stdout.strip()


@needs_avx2
def test_stages_run_the_avx2_kernels_unless_told_otherwise():
    report = "import os, torch; print(torch.backends.cpu.get_cpu_capability(), os.environ.get('MKL_CBWR'))"
    assert _in_a_stage_process(report) == "AVX2 AVX2"
    assert _in_a_stage_process(report, ATEN_CPU_CAPABILITY="default", MKL_CBWR="AUTO") == "DEFAULT AUTO"


def _trained_weights_digest() -> str:
    """sha256 of a tiny Llama's weights after 3 seeded AdamW steps on random tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=256, max_position_embeddings=128, attn_implementation="sdpa")
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tokens = torch.randint(0, 512, (3, 8, 128), generator=torch.Generator().manual_seed(1))
    for ids in tokens:
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    digest = hashlib.sha256()
    for _, tensor in sorted(model.state_dict().items()):
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# Computed on an AVX-512 AMD EPYC with lancy's settings (2 threads; 1, 4 and 8 gave the same). The same settings
# reproduced, byte for byte, the committed default run made on an AVX2 EPYC (docs/pipeline.md).
AVX2_DIGEST = "6efd6b1982efda104cb1947c78f99d550025977eabe1b21333e2b552b992260b"


@needs_avx2
def test_a_seeded_run_trains_the_same_weights_on_every_machine_with_avx2():
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"  # tests/conftest.py imports lancy before torch
    assert _trained_weights_digest() == AVX2_DIGEST
