"""Shared test setup: offline Hugging Face libraries, quiet tokenizers, and the repository root."""
import os
from pathlib import Path

import pytest

# Set before any test module imports transformers/datasets: the tests never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import lancy  # noqa: E402,F401  (before any test module imports torch: the pipeline's CPU kernels, lancy.cpu_kernels)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding params.yaml and dvc.yaml)."""
    return REPO_ROOT
