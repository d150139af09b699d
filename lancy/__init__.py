"""lancy: a reproducible pipeline for training language models, orchestrated by DVC."""
from lancy.cpu_kernels import use_portable_cpu_kernels

use_portable_cpu_kernels()  # before anything imports torch

import datasets  # noqa: E402

from lancy.lazy_imports import defer_bitsandbytes  # noqa: E402

datasets.disable_progress_bars()  # stage logs stay readable
defer_bitsandbytes()  # bitsandbytes (QLoRA) loads only when used, though peft imports it eagerly
