"""lancy: a reproducible pipeline for training language models, orchestrated by DVC."""
import datasets

datasets.disable_progress_bars()  # stage logs stay readable
