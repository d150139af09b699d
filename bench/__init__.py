"""lancy's benchmarks (`make bench`). lancy is imported first, before torch: the benchmarks time the CPU kernels the
pipeline runs (lancy.cpu_kernels). bench/gpu_sft.py runs as a script, outside this package."""
import importlib.util

import lancy  # noqa: F401


def other_implementation(path: str):
    """A module loaded from a file (an older lancy module, `git show <commit>:lancy/<module>.py`), for the
    benchmarks' `--module`, which time it beside lancy's own."""
    spec = importlib.util.spec_from_file_location("other_implementation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
