"""lancy's benchmarks (`make bench`). lancy is imported first, before torch: the benchmarks time the CPU kernels the
pipeline runs (lancy.cpu_kernels). bench/gpu_sft.py runs as a script, outside this package."""
import lancy  # noqa: F401
