"""A tiny lancy project in a temporary folder, for tests that run stage scripts as processes (no git, no dvc):
tests/test_training.py and tests/test_fsdp.py."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LISTS = ("mixture", "rl_mixture", "corpus")  # params sections replaced whole; the others are updated key by key
TINY_DATA = {  # the tiny data and model both files train on; each adds its own training sections
    "data": {"train_rows": 200, "test_rows": 20},
    "mixture": {"imdb": 0.5, "sst2": 0.5, "wikitext": 0.0},
    "rl_mixture": {},
    "corpus": {"wikitext": 0.5, "imdb": 0.5},
    "mix": {"sft_rows": 100, "rl_rows": 8, "corpus_chars": 60_000},
    "model": {"vocab_size": 512, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
    "tokenize": {"max_length": 64},
}


def stage_env(root: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(root), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def run_stage(root: Path, *args: str) -> str:
    """`python -m <args>` in the project; its output, or the end of it in the assertion when it fails."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=root, env=stage_env(root), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


def tiny_project(root: Path, tiny: dict, folders: tuple[str, ...] = ("lancy", "stages")) -> Path:
    """lancy's `folders` copied into `root`, params.yaml with `tiny` over the defaults, the data stages run."""
    for name in folders:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in tiny.items():
        params[section] = values if section in LISTS else {**params[section], **values}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for name in tiny["mixture"]:
        run_stage(root, "stages.download", name)
    run_stage(root, "stages.mix")
    run_stage(root, "stages.tokenize")
    return root
