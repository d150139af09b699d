"""lancy: a reproducible pipeline for training language models, orchestrated by DVC."""
import datasets

from lancy.lazy_imports import defer_bitsandbytes

datasets.disable_progress_bars()  # stage logs stay readable
defer_bitsandbytes()  # bitsandbytes (QLoRA) loads only when used, though peft imports it eagerly
