"""Pipeline benchmarks: the embedded default end to end per stage, and `dvc repro` with nothing to do.

Both run on a committed copy of the repository in a temporary folder, with the repository's own params
(or the test suite's reduced sizes with --quick).
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
QUICK = {
    "data": {"train_rows": 300, "test_rows": 40},
    "mix": {"sft_rows": 300, "rl_rows": 16, "corpus_chars": 150_000},
    "model": {"vocab_size": 1024, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
    "pretrain": {"max_steps": 4}, "sft": {"max_steps": 4}, "grpo": {"max_steps": 2}, "evaluate": {"max_rows": 8},
}


def _env() -> dict:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="1",
                HF_DATASETS_OFFLINE="1")


def _git_commit(root: Path) -> None:
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "bench"]):
        subprocess.run(args, cwd=root, check=True, capture_output=True)


def copy_repo(root: Path, quick: bool) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(("metrics/", "dvc.lock", "bench/")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    if quick:
        params = yaml.safe_load((root / "params.yaml").read_text())
        for section, values in QUICK.items():
            params[section].update(values)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _git_commit(root)


def timed_repro(root: Path) -> dict[str, float]:
    """Seconds per stage of one `dvc repro` (from DVC's 'Running stage' lines; the last stage ends at exit)."""
    start = time.perf_counter()
    process = subprocess.Popen(["dvc", "repro"], cwd=root, env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    marks, tail = [], []
    for line in process.stdout:
        tail = (tail + [line])[-40:]
        match = re.match(r"Running stage '([^']+)'", line)
        if match:
            marks.append((match.group(1), time.perf_counter() - start))
    if process.wait():
        raise RuntimeError("dvc repro failed:\n" + "".join(tail))
    total = time.perf_counter() - start
    ends = [t for _, t in marks[1:]] + [total]
    stages = {name: end - begin for (name, begin), end in zip(marks, ends, strict=True)}
    return {"total": total, **stages}


def _noop_seconds(root: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(["dvc", "repro"], cwd=root, env=_env(), capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        assert result.returncode == 0 and "Running stage" not in result.stdout, result.stdout
    return times


def bare_dvc_project(root: Path, lancy_root: Path) -> None:
    """A DVC pipeline of the same shape as lancy's (stages, foreach items, deps, outs, params) with trivial commands."""
    spec = yaml.safe_load((lancy_root / "dvc.yaml").read_text())
    params = yaml.safe_load((lancy_root / "params.yaml").read_text())
    stages = {}
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        items = list(params["mixture"]) if "foreach" in stage and name == "download" else stage.get("foreach")
        for item in items or [None]:
            key = f"{name}_{item}" if item else name
            deps = [f"in/{key}_{i}" for i in range(len(body.get("deps", [])))]
            outs = [f"out/{key}_{i}" for i in range(len(body.get("outs", [])))]
            for dep in deps:
                (root / dep).parent.mkdir(parents=True, exist_ok=True)
                (root / dep).write_text(dep)
            stages[key] = {"cmd": "mkdir -p out && " + " && ".join(f"echo {o} > {o}" for o in outs),
                           "deps": deps, "params": body.get("params", []), "outs": outs}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    shutil.copy2(lancy_root / "params.yaml", root / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=root, env=_env(), check=True, capture_output=True)
    _git_commit(root)
    subprocess.run(["dvc", "repro"], cwd=root, env=_env(), check=True, capture_output=True)


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        lancy, bare = Path(tmp) / "lancy", Path(tmp) / "bare"
        lancy.mkdir()
        bare.mkdir()
        copy_repo(lancy, quick)
        stages = timed_repro(lancy)
        bare_dvc_project(bare, lancy)
        runs = 3 if quick else 7
        ours, theirs = _noop_seconds(lancy, runs), _noop_seconds(bare, runs)
    return {
        "stages_s": stages,
        "noop": {"lancy_s": statistics.median(ours), "bare_dvc_s": statistics.median(theirs),
                 "ratio": statistics.median(ours) / statistics.median(theirs), "runs": runs},
    }
