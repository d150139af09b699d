"""FSDP2 for real: pretrain and sft under `launch.config: configs/accelerate/fsdp_cpu.yaml` on two CPU processes
over gloo give the single-process run's losses, checkpoint and resume sharded, and save a model that loads on one
process. The DeepSpeed configs are checked by parsing alone (DeepSpeed is not installed: docs/distributed.md).

The FSDP runs use `batch_size` b per process against 2b in the single-process run: the same rows per optimizer step
(accelerate gives process i the i-th of each pair of b-row batches), the same token-weighted loss (transformers
averages the number of labelled tokens across processes).
"""
import dataclasses
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_project import TINY_DATA, run_stage, stage_env, tiny_project

REPO = Path(__file__).resolve().parents[1]
FSDP = "configs/accelerate/fsdp_cpu.yaml"
TINY = {
    **TINY_DATA,
    "pretrain": {"max_steps": 8, "batch_size": 1, "logging_steps": 1, "eval_steps": 4, "learning_rate": 0.003},
    "sft": {"max_steps": 6, "batch_size": 2, "logging_steps": 1},
}
LOSS_TOLERANCE = 1e-4  # per-step training loss, FSDP vs one process (measured: 1e-6, float summation order)
LOGITS_TOLERANCE = 1e-4  # saved models' logits (measured: 2e-7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """lancy, its stages, the accelerate configs and tiny params, with the data stages already run."""
    return tiny_project(tmp_path_factory.mktemp("workspace"), TINY, ("lancy", "stages", "configs"))


def _copy(workspace: Path, to: Path, stage: str, processes: int, keep: tuple[str, ...] = (), **section) -> Path:
    """A run folder: the workspace's data (and `keep`), `launch` for FSDP on `processes` processes or one plain
    process, and the stage's batch size doubled on one process (the same rows per step)."""
    shutil.copytree(workspace, to, ignore=shutil.ignore_patterns("models", "checkpoints", "metrics", "logs"))
    for name in keep:
        shutil.copytree(workspace / name, to / name)
    params = yaml.safe_load((to / "params.yaml").read_text())
    params["launch"].update(processes=processes, main_port=_free_port(), config=FSDP if processes > 1 else "")
    params[stage].update(section)
    if processes == 1:
        params[stage]["batch_size"] *= 2
    (to / "params.yaml").write_text(yaml.safe_dump(params))
    return to


def _run(root: Path, stage: str) -> tuple[str, bool]:
    """Run a stage through lancy.launch; returns its output and whether a sharded FSDP checkpoint (one
    torch.distributed.checkpoint file per process) was seen while it ran (the stage removes its checkpoints)."""
    with open(root / "stage.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "lancy.launch", f"stages.{stage}"], cwd=root,
                                   env=stage_env(root), stdout=log, stderr=subprocess.STDOUT)
        sharded = False
        while process.poll() is None:
            sharded = sharded or len(list((root / "checkpoints" / stage).glob("checkpoint-*/*fsdp*/*.distcp"))) == 2
            time.sleep(0.05)
    output = (root / "stage.log").read_text()
    assert process.returncode == 0, output[-4000:]
    return output, sharded


def _losses(root: Path, stage: str) -> dict[int, float]:
    rows = (root / f"metrics/{stage}/plots/metrics/loss.tsv").read_text().split("\n")[1:]
    return {int(row.split("\t")[0]): float(row.split("\t")[1]) for row in rows if row}


def _assert_same_losses(fsdp: dict[int, float], single: dict[int, float]) -> None:
    assert fsdp.keys() == single.keys() and len(fsdp) > 1
    worst = max(abs(fsdp[step] - single[step]) for step in fsdp)
    print(f"{len(fsdp)} logged steps, largest loss difference FSDP vs one process: {worst:.2e}")  # pytest -s
    assert worst < LOSS_TOLERANCE, f"FSDP {fsdp} vs one process {single}"


def _logits(folder: Path, input_ids: list[list[int]]):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder).eval()  # one process: no process group here
    with torch.no_grad():
        return model(torch.tensor(input_ids), use_cache=False).logits


def _row_mean_loss(folder: Path, table: Path) -> float:
    """The mean over a table's rows of each row's loss, computed by the saved model on this one process: what the
    Trainer's evaluation reports with one row per batch (on any number of processes)."""
    import torch
    from transformers import AutoModelForCausalLM

    from lancy.packing import PackedCollator
    from lancy.tables import read_table

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    collate, rows = PackedCollator(pad_id=0), read_table(table)
    with torch.no_grad():
        losses = [model(**collate([row])).loss.item() for row in rows]
    return sum(losses) / len(losses)


def test_pretrain_under_fsdp_matches_one_process(workspace: Path, tmp_path: Path):
    """Two gloo processes under FSDP2 (parameters, gradients and optimizer state sharded) train as one process with
    twice the batch does, step by step; the model they save loads on one process and gives the sharded model's
    validation loss (its last evaluation, one row per batch) and the one-process model's logits."""
    fsdp = _copy(workspace, tmp_path / "fsdp", "pretrain", processes=2)
    output, sharded = _run(fsdp, "pretrain")
    assert "accelerate launch --config_file configs/accelerate/fsdp_cpu.yaml --num_processes 2" in output
    assert "FSDP2 on 2 CPU processes over gloo" in output and sharded, "not FSDP (DDP?): " + output[-3000:]
    summary = json.loads((fsdp / "metrics/pretrain/metrics.json").read_text())
    assert summary["processes"] == 2 and summary["effective_batch_size"] == 2 and summary["step"] == 8

    single = _copy(workspace, tmp_path / "single", "pretrain", processes=1)
    _run(single, "pretrain")
    _assert_same_losses(_losses(fsdp, "pretrain"), _losses(single, "pretrain"))

    saved = fsdp / "models/pretrain"
    assert abs(_row_mean_loss(saved, fsdp / "data/tokenized/pretrain_val") - summary["eval"]["loss"]) < 1e-5
    input_ids = [[(7 * i + 3 * j) % 512 for j in range(40)] for i in range(2)]
    difference = (_logits(saved, input_ids) - _logits(single / "models/pretrain", input_ids)).abs().max().item()
    assert difference < LOGITS_TOLERANCE


@pytest.fixture(scope="module")
def pretrained(workspace: Path) -> Path:
    """The workspace with models/pretrain, from one process: what sft starts from."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["launch"].update(processes=1, config="")
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(workspace, "stages.pretrain")
    return workspace


@pytest.mark.slow
def test_sft_under_fsdp_matches_one_process(pretrained: Path, tmp_path: Path):
    """SFT (loss on completions only, through the fused LM head) under FSDP2 on two processes: the one-process
    losses and a saved model with the one-process model's logits."""
    fsdp = _copy(pretrained, tmp_path / "fsdp", "sft", processes=2, keep=("models/pretrain",))
    output, sharded = _run(fsdp, "sft")
    assert "FSDP2 on 2 CPU processes over gloo" in output and sharded
    single = _copy(pretrained, tmp_path / "single", "sft", processes=1, keep=("models/pretrain",))
    _run(single, "sft")
    _assert_same_losses(_losses(fsdp, "sft"), _losses(single, "sft"))
    input_ids = [[(5 * i + 11 * j) % 512 for j in range(40)] for i in range(2)]
    difference = (_logits(fsdp / "models/sft", input_ids) - _logits(single / "models/sft", input_ids)).abs().max()
    assert difference.item() < LOGITS_TOLERANCE


@pytest.mark.slow
def test_fsdp_run_interrupted_after_a_checkpoint_resumes_from_it(workspace: Path, tmp_path: Path):
    """A pretrain under FSDP stopped after a sharded checkpoint (SIGTERM to the launcher, which stops both
    processes) resumes from it under FSDP: parameters, optimizer state, schedule and data position come back, so
    the whole curve is the uninterrupted one-process run's."""
    steps = dict(max_steps=60, save_steps=10, eval_steps=30, logging_steps=5)
    fsdp = _copy(workspace, tmp_path / "fsdp", "pretrain", processes=2, **steps)
    checkpoints = fsdp / "checkpoints" / "pretrain"
    with open(fsdp / "killed.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "lancy.launch", "stages.pretrain"], cwd=fsdp,
                                   env=stage_env(fsdp), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while not list(checkpoints.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
            assert process.poll() is None, (fsdp / "killed.log").read_text()[-3000:]  # ended before a checkpoint
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)  # the launcher (accelerate, torchrun's agent) stops its workers
        process.wait(timeout=60)
    complete = sorted(int(p.parent.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*/trainer_state.json"))
    assert complete and complete[-1] < 60, "the run was not interrupted midway"
    print(f"stopped after checkpoint-{complete[-1]} of 60 steps")  # pytest -s
    shards = list(checkpoints.glob(f"checkpoint-{complete[-1]}/pytorch_model_fsdp_0/*.distcp"))
    assert len(shards) == 2, "a checkpoint of each process's shard (torch.distributed.checkpoint)"
    assert not (fsdp / "models/pretrain/config.json").exists()

    output, _ = _run(fsdp, "pretrain")
    assert f"resuming from checkpoints/pretrain/checkpoint-{complete[-1]}" in output
    summary = json.loads((fsdp / "metrics/pretrain/metrics.json").read_text())
    assert summary["resumed_from_step"] == complete[-1] and summary["step"] == 60
    single = _copy(workspace, tmp_path / "single", "pretrain", processes=1, **steps)
    _run(single, "pretrain")
    _assert_same_losses(_losses(fsdp, "pretrain"), _losses(single, "pretrain"))
    input_ids = [[(7 * i + 3 * j) % 512 for j in range(40)] for i in range(2)]
    difference = (_logits(fsdp / "models/pretrain", input_ids) - _logits(single / "models/pretrain", input_ids))
    assert difference.abs().max().item() < LOGITS_TOLERANCE


@pytest.mark.parametrize("config", ["fsdp.yaml", "fsdp_cpu.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"])
def test_accelerate_configs_parse_as_accelerate_launch_reads_them(config: str):
    """Each config in configs/accelerate/, with the command lancy.launch builds for it, through accelerate's own
    parsing and its launcher's environment (without starting processes, so without DeepSpeed installed): no
    unknown key (accelerate would ignore it silently), and the settings the stage processes will read."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    from lancy.launch import command
    from lancy.params import Launch

    path = REPO / "configs" / "accelerate" / config
    settings = yaml.safe_load(path.read_text())
    parser = launch_command_parser()
    known = {action.dest for action in parser._actions}
    section = settings.get("deepspeed_config") or settings["fsdp_config"]
    assert set(section) <= known, set(section) - known
    assert set(settings) <= {field.name for field in dataclasses.fields(ClusterConfig)}

    cmd = command("stages.sft", Launch(processes=2, config=str(path)))
    assert cmd[:2] == ["accelerate", "launch"]
    args, defaults, _ = _validate_launch_command(parser.parse_args(cmd[2:]))
    assert args.num_processes == 2 and not args.cpu  # --cpu would run ONE process
    if config.startswith("deepspeed"):
        assert args.use_deepspeed and not args.use_fsdp
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command does
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == config.removesuffix(".yaml")[-1]
        assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
        assert env["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] == "none"
    else:
        assert args.use_fsdp and not args.use_deepspeed
        env = prepare_multi_gpu_env(args)
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        assert env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
        assert env["ACCELERATE_MIXED_PRECISION"] == ("no" if config == "fsdp_cpu.yaml" else "bf16")


def test_fsdp_on_cpu_only_under_an_fsdp_launch(monkeypatch):
    """Outside `accelerate launch` with an FSDP config on several processes, the Trainer's own choices stand."""
    from lancy.launch import fsdp_on_cpu

    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert fsdp_on_cpu() == {}
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert fsdp_on_cpu() == {}
