"""The whole pipeline through the real dvc commands, on a copy of the repository with reduced sizes.

dvc repro -> a second dvc repro is a no-op -> code edits make exactly the stages they touch out of date ->
dvc exp run -S mixture.imdb=0.7 re-runs only what the
weight touches -> dvc exp run -S '+mixture.mrpc=0.2' downloads mrpc alone; dvc metrics diff shows both.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "data": {"train_rows": 300, "test_rows": 40},
    "mix": {"sft_rows": 300, "rl_rows": 16, "corpus_chars": 150_000},
    "model": {"vocab_size": 1024, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
    "tokenize": {"max_length": 128},
    "pretrain": {"max_steps": 4, "batch_size": 4, "logging_steps": 2},
    "sft": {"max_steps": 4, "batch_size": 4, "logging_steps": 2},
    "grpo": {"max_steps": 2, "batch_size": 4, "num_generations": 2, "logging_steps": 1},
    "evaluate": {"max_rows": 8, "max_new_tokens": 8},
}

pytestmark = pytest.mark.e2e


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", PYTHONPATH=str(cwd))
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _deep_update(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict):
            _deep_update(target.setdefault(key, {}), value)
        else:
            target[key] = value


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A committed copy of the working tree (tracked and untracked, not ignored files) with small params."""
    root = tmp_path_factory.mktemp("lancy")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(("metrics/", "dvc.lock")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    _deep_update(params, SMALL)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(args, cwd=root, check=True)
    return root


def test_repro_then_noop_then_experiments(project: Path):
    output = _run(["dvc", "repro"], project)
    stages = {"mix", "tokenize", "pretrain", "sft", "grpo", "evaluate@pretrain", "evaluate@sft", "evaluate@grpo"}
    assert stages | {"download@imdb", "download@sst2", "download@gsm8k", "download@wikitext"} <= _ran(output)
    for name in ("pretrain", "sft", "grpo"):
        assert (project / "models" / name / "config.json").exists()
        assert (project / "metrics" / name / "plots" / "metrics" / "loss.tsv").exists()
    evaluation = json.loads((project / "metrics/eval/sft.json").read_text())
    assert {"imdb", "sst2", "gsm8k", "wikitext"} <= set(evaluation)
    assert 0 <= evaluation["imdb"]["accuracy"] <= 1 and evaluation["wikitext"]["perplexity"] > 1

    assert _ran(_run(["dvc", "repro"], project)) == set()

    # A code change re-runs what it touches: a label word edited in the catalog makes mix (and all that follows
    # it) out of date; a change to the training loop leaves the data stages alone.
    catalog = project / "lancy" / "catalog.py"
    original = catalog.read_text()
    catalog.write_text(original.replace('labels=("negative", "positive")', 'labels=("negative", "favourable")', 1))
    changed = set(json.loads(_run(["dvc", "status", "--json"], project)))
    assert {"mix", "evaluate@sft", "evaluate@grpo"} <= changed and "pretrain" not in changed
    catalog.write_text(original)
    training = project / "lancy" / "training.py"
    training.write_text(training.read_text() + "\n# edited\n")
    changed = set(json.loads(_run(["dvc", "status", "--json"], project)))
    assert {"pretrain", "sft", "grpo"} <= changed and not changed & {"mix", "tokenize", "evaluate@sft"}
    _run(["git", "checkout", "lancy/training.py"], project)
    assert _ran(_run(["dvc", "repro"], project)) == set()
    _run(["git", "add", "-A"], project)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], project)

    # A weight change re-runs the mixture and what is downstream of it, never a download; the corpus
    # weights did not change, so the tokenizer and pretraining blocks come out identical and pretrain is skipped.
    ran = _ran(_run(["dvc", "exp", "run", "-S", "mixture.imdb=0.7"], project))
    assert not any(stage.startswith("download@") for stage in ran)
    assert {"mix", "tokenize", "sft", "grpo", "evaluate@sft", "evaluate@grpo"} <= ran
    assert "pretrain" not in ran and "evaluate@pretrain" not in ran
    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], project))
    rates = diff["metrics/mix.json"]
    assert rates["sources.imdb.rate"]["new"] > rates["sources.imdb.rate"]["old"]
    assert rates["sources.sst2.effective_rate"]["new"] < rates["sources.sst2.effective_rate"]["old"]

    # A new dataset downloads that dataset alone.
    ran = _ran(_run(["dvc", "exp", "run", "-S", "+mixture.mrpc=0.2"], project))
    assert {s for s in ran if s.startswith("download@")} == {"download@mrpc"}
    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], project))
    assert diff["metrics/mix.json"]["sources.mrpc.rows"]["new"] > 0
    assert "mrpc.accuracy" in diff["metrics/eval/sft.json"]
