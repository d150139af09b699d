"""The CPU kernels PyTorch runs: the AVX2 ones on every x86-64 machine that has AVX2, so that the same params
and seed train the same weights on AVX2 and AVX-512 machines alike.

PyTorch's own kernels (ATen) and MKL's matrix products use the widest instructions the CPU has, and AVX-512
kernels round differently from AVX2 ones: the embedded default trained other weights on an AVX-512 machine than
on the AVX2 machine of the committed dvc.lock, with other held-out numbers. With the settings below it
reproduced every committed model and metric byte for byte, in the same time (docs/pipeline.md: "The same
weights on every x86-64 machine with AVX2").
- `ATEN_CPU_CAPABILITY=avx2`: ATen's vectorized kernels. This one made the difference on the AVX-512 machine,
  an AMD EPYC.
- `MKL_CBWR=AVX2`: MKL's conditional numerical reproducibility, pinned to its AVX2 code path. On the AMD
  machine MKL chose its AVX2 path anyway; on Intel CPUs with AVX-512 it chooses the AVX-512 one.

`lancy/__init__.py` applies them before anything imports torch, where the CPU has AVX2 and FMA (AVX2 kernels
would crash an older CPU) and the flags can be read (Linux; /proc/cpuinfo). A variable already set is kept:
`ATEN_CPU_CAPABILITY=avx512 MKL_CBWR=AUTO dvc repro` runs the native kernels, faster on some CPUs, with
weights of their own. What stays machine-dependent: GPUs, other architectures (ARM), and other PyTorch or MKL
versions (requirements.txt pins them).
"""
import os
from pathlib import Path

SETTINGS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo; empty where there is none (macOS, Windows)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def has_avx2(flags: set[str]) -> bool:
    """Whether a CPU with these flags runs ATen's AVX2 kernels, which need FMA too."""
    return {"avx2", "fma"} <= flags


def portable_settings(flags: set[str], environ) -> dict[str, str]:
    """The variables to set: SETTINGS where the CPU has AVX2 and FMA, less those the environment already sets."""
    if not has_avx2(flags):
        return {}
    return {name: value for name, value in SETTINGS.items() if name not in environ}


def use_portable_cpu_kernels() -> None:
    """Apply the settings to this process (and the processes it starts). Effective only before torch loads."""
    os.environ.update(portable_settings(cpu_flags(), os.environ))
