"""Training stages on a tiny workspace: resumption after a kill, step-0 facts, curves at optimizer steps."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_project import TINY_DATA, run_stage, stage_env, tiny_project

from lancy.cpu_kernels import cpu_flags, has_avx2
from lancy.errors import LancyError

TINY = {
    **TINY_DATA,
    "pretrain": {"max_steps": 240, "batch_size": 2, "logging_steps": 10, "learning_rate": 0.003},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """lancy, its stages and tiny params, with the data stages already run (no git, no dvc needed)."""
    return tiny_project(tmp_path_factory.mktemp("workspace"), TINY)


def test_pretrain_killed_after_a_checkpoint_resumes_from_it(workspace: Path):
    checkpoints = workspace / "checkpoints" / "pretrain"
    process = subprocess.Popen([sys.executable, "-m", "stages.pretrain"], cwd=workspace, env=stage_env(workspace),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
        assert process.poll() is None, "pretrain finished before its first checkpoint could be interrupted"
        time.sleep(0.05)
    time.sleep(0.5)  # let the checkpoint finish writing, as a real interruption might not
    process.send_signal(signal.SIGKILL)
    process.wait()
    complete = checkpoints.glob("checkpoint-*/trainer_state.json")
    saved = sorted(int(p.parent.name.split("-")[1]) for p in complete)
    assert saved and saved[-1] < 240, "the run was not interrupted midway"  # (a partial one may follow)
    assert not (workspace / "models" / "pretrain" / "config.json").exists(), "a killed stage left a model behind"

    output = run_stage(workspace, "stages.pretrain")
    assert f"resuming from checkpoints/pretrain/checkpoint-{saved[-1]}" in output  # the last complete one
    summary = json.loads((workspace / "metrics/pretrain/metrics.json").read_text())
    assert summary["resumed_from_step"] == saved[-1] and summary["step"] == 240
    assert (workspace / "models/pretrain/model.safetensors").exists()
    assert not checkpoints.exists(), "checkpoints of a finished run are removed"
    # The curve is continuous across the interruption, logged at optimizer steps, and the loss fell.
    rows = (workspace / "metrics/pretrain/plots/metrics/loss.tsv").read_text().split("\n")[1:]
    steps = [int(row.split("\t")[0]) for row in rows if row]
    losses = [float(row.split("\t")[1]) for row in rows if row]
    assert steps == list(range(10, 241, 10))
    assert losses[0] > 6.0 and losses[-1] < losses[0] - 1.0  # from uniform over 512 tokens (6.24) down


def test_step_zero_facts_in_tensorboard_and_metrics(workspace: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not (workspace / "models/pretrain").exists():
        run_stage(workspace, "stages.pretrain")
    events = EventAccumulator(str(workspace / "logs/pretrain"))
    events.Reload()
    params = events.Scalars("facts/total_params")
    assert params[0].step == 0 and params[0].value > 10_000
    assert events.Scalars("facts/trainable_share")[0].value == 1.0
    assert events.Scalars("facts/token_budget")[0].value == 240 * 2 * 64
    shares = {name: events.Scalars(f"facts/data/{name}")[0].value for name in ("wikitext", "imdb")}
    assert abs(sum(shares.values()) - 1) < 1e-3 and all(0 < v < 1 for v in shares.values())  # the corpus mixture
    summary = json.loads((workspace / "metrics/pretrain/metrics.json").read_text())
    assert summary["attention"] == "sdpa" and summary["device"] == "cpu" and summary["dtype"] == "float32"
    assert summary["chunked_loss"] is True  # pretrain.chunked_loss: on by default, and it applies on the CPU in fp32
    assert summary["total_params"] == params[0].value
    if has_avx2(cpu_flags()):  # lancy.cpu_kernels: the AVX2 kernels, whatever wider ones the CPU has
        assert summary["cpu_kernels"] == "AVX2"


def test_sft_on_two_cpu_processes(workspace: Path):
    """`launch.processes: 2` runs sft under torchrun: two processes over gloo, one DVCLive log, one model."""
    if not (workspace / "models/pretrain").exists():
        run_stage(workspace, "stages.pretrain")
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["launch"]["processes"] = 2
    params["launch"]["main_port"] = 29517
    params["sft"].update(max_steps=3, batch_size=2, logging_steps=1)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    output = run_stage(workspace, "lancy.launch", "stages.sft")
    assert "torchrun --nproc_per_node 2" in output
    summary = json.loads((workspace / "metrics/sft/metrics.json").read_text())
    assert summary["processes"] == 2 and summary["effective_batch_size"] == 4 and summary["step"] == 3
    assert (workspace / "models/sft/model.safetensors").exists()
    rows = (workspace / "metrics/sft/plots/metrics/loss.tsv").read_text().split("\n")[1:]
    assert [row.split("\t")[0] for row in rows if row] == ["1", "2", "3"]  # logged once, by the main process


def test_grpo_logs_each_datasets_reward_curve(workspace: Path):
    """A GRPO run on two datasets' prompts logs each one's reward per step (rewards/<name>/mean), without NaN at
    steps that drew none of its rows, and summarizes each curve's first and last quarter. Sampling params
    (temperature, min_p) reach TRL's config."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["launch"]["processes"] = 1
    params["sft"].update(max_steps=3, batch_size=2)
    params["grpo"].update(max_steps=4, batch_size=4, num_generations=2, logging_steps=1, max_completion_length=4,
                          min_p=0.05)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("pretrain", "sft"):
        if not (workspace / f"models/{stage}").exists():
            run_stage(workspace, f"stages.{stage}")
    run_stage(workspace, "stages.grpo")
    config = yaml.safe_load((workspace / "metrics/grpo/params.yaml").read_text())  # the GRPOConfig, as DVCLive logs it
    assert config["min_p"] == 0.05 and config["temperature"] == params["grpo"]["temperature"]

    def no_nan(constant):
        raise AssertionError(f"{constant} in metrics/grpo/metrics.json")

    summary = json.loads((workspace / "metrics/grpo/metrics.json").read_text(), parse_constant=no_nan)
    assert set(summary["reward_by_source"]) == {"imdb", "sst2"} and {"imdb", "sst2"} <= set(summary["rewards"])
    logged = 0
    for name in ("imdb", "sst2"):
        rows = (workspace / f"metrics/grpo/plots/metrics/rewards/{name}/mean.tsv").read_text().split("\n")[1:]
        values = [float(row.split("\t")[1]) for row in rows if row]
        assert values and all(0 <= value <= 1 for value in values)
        logged += len(values)
    assert logged >= 4  # every step drew a row of one dataset at least (two prompts per step)


def test_a_checkpoint_killed_while_saving_is_skipped(tmp_path: Path):
    from lancy.training import last_complete_checkpoint

    for step, complete in ((50, True), (100, True), (150, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_text("weights")
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-100")
    assert last_complete_checkpoint(tmp_path / "nothing") is None


@pytest.mark.parametrize("chunked", [False, True])
def test_same_params_give_the_same_pretrained_model(workspace: Path, tmp_path: Path, chunked: bool):
    """Seeded end to end: two runs of pretrain from the same data and params write identical weights, curves,
    summaries and TensorBoard logs, with the model's own loss and with the chunked one (`pretrain.chunked_loss`,
    which the run's facts report)."""
    import hashlib

    roots, runs = [tmp_path / "a", tmp_path / "b"], []
    for root in roots:  # the two runs side by side, one per core
        shutil.copytree(workspace, root, ignore=shutil.ignore_patterns("models", "checkpoints", "metrics", "logs"))
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["pretrain"].update(max_steps=6, logging_steps=2, chunked_loss=chunked)
        params["launch"]["processes"] = 1
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        with open(root / "stage.log", "w") as log:
            runs.append(subprocess.Popen([sys.executable, "-m", "stages.pretrain"], cwd=root, env=stage_env(root),
                                         stdout=log, stderr=subprocess.STDOUT))
    for root, run in zip(roots, runs, strict=True):
        assert run.wait(timeout=300) == 0, (root / "stage.log").read_text()[-3000:]
    digests = [hashlib.sha256((root / "models/pretrain/model.safetensors").read_bytes()).hexdigest() for root in roots]
    assert digests[0] == digests[1]
    assert json.loads((roots[0] / "metrics/pretrain/metrics.json").read_text())["chunked_loss"] is chunked
    for folder in ("metrics/pretrain", "logs/pretrain"):  # no wall-clock times: DVC sees the same outputs
        files = [{str(p.relative_to(root / folder)): p.read_bytes() for p in sorted((root / folder).rglob("*"))
                  if p.is_file()} for root in roots]
        assert files[0] == files[1] and files[0], folder
    assert [p.name for p in (roots[0] / "logs/pretrain").iterdir()] == ["events.out.tfevents.0.lancy"]


def test_reward_summary_of_a_grpo_log():
    """The GRPO criteria from TRL's logged steps: first vs last quarter reward, mean share of zero-std groups."""
    from lancy.training import reward_summary

    logs = [{"step": s, "reward": s / 8, "frac_reward_zero_std": 0.25} for s in range(1, 9)] + [{"step": 8, "loss": 0}]
    assert reward_summary(logs) == {"reward_first_quarter": (1 / 8 + 2 / 8) / 2, "reward_last_quarter": (7 / 8 + 1) / 2,
                                    "frac_reward_zero_std": 0.25}
    assert reward_summary([{"step": 1, "loss": 0.1}]) == {}
    for entry in logs[:8]:  # steps without a row of the source: TRL's history has None, its metrics NaN
        entry["rewards/fpb/mean"] = {2: None, 8: float("nan")}.get(entry["step"], entry["step"] / 16)
    assert reward_summary(logs, ["fpb"])["reward_by_source"] == {"fpb": {"first_quarter": 1 / 16,
                                                                        "last_quarter": 7 / 16}}


def test_a_source_reward_scores_its_own_rows_alone():
    """The per-dataset reward curves of a mixed GRPO run: None (not 0) for other sources' rows, so TRL's nanmean
    leaves them out, and each of its rows scored as the task reward scores it."""
    from lancy.rewards import source_reward, task_reward

    columns = {"prompts": ["p"] * 4, "completions": [" positive", " negative", " positive", "#### 4"],
               "answer": ["positive", "positive", "positive", "4"], "task": ["classification"] * 3 + ["math"],
               "labels": [["negative", "positive"]] * 3 + [[]], "source": ["fpb", "fpb", "imdb", "gsm8k"]}
    fpb = source_reward("fpb")
    assert fpb.__name__ == "fpb"  # TRL's name for rewards/<name>/mean
    assert fpb(**columns) == [1.0, 0.0, None, None]
    assert source_reward("gsm8k")(**columns) == [None, None, None, 1.0]
    assert task_reward(**{k: v for k, v in columns.items() if k != "source"}) == [1.0, 0.0, 1.0, 1.0]


def test_liger_kernel_is_for_cuda_training_only(monkeypatch):
    import importlib.util

    import lancy.training

    assert lancy.training.liger_arguments(False) == {}
    with pytest.raises(LancyError, match="params key `model.liger_kernel` needs CUDA and the liger-kernel package"):
        lancy.training.liger_arguments(True)  # this machine: no CUDA
    monkeypatch.setattr(lancy.training, "device_and_dtype", lambda: ("cuda", "torch.bfloat16"))
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: name == "liger_kernel" or found(name))
    assert lancy.training.liger_arguments(True) == {"use_liger_kernel": True}  # transformers then patches the model
