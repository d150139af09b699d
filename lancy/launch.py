"""Launching a training stage on one process or many: `python -m lancy.launch stages.sft`.

With `launch.processes: 1` on one machine and no accelerate config, the stage runs in this process.
Otherwise it runs under torchrun (DDP; gloo on CPU, NCCL on GPUs), or under `accelerate launch` with
`launch.config` (the FSDP and DeepSpeed files in configs/accelerate/; fsdp_cpu.yaml on CPU processes, which
`fsdp_on_cpu` below makes FSDP: docs/distributed.md). Several machines: run the same
command on each, with `launch.machines`, its `launch.machine_rank` and the first machine's
`launch.main_address` (e.g. `dvc exp run -S launch.machine_rank=1`).
"""
import os
import runpy
import shutil
import sys

from lancy import params as P
from lancy.errors import LancyError, run_stage

PARAMS = ("launch",)


def command(stage: str, launch) -> list[str] | None:
    """The launcher command for a stage module, or None to run it in this process."""
    if launch.processes == 1 and launch.machines == 1 and not launch.config:
        return None
    rendezvous = ["--main_process_ip", launch.main_address, "--main_process_port", str(launch.main_port)]
    if launch.config:
        if not os.path.exists(launch.config):
            raise LancyError(f"params key `launch.config`: {launch.config} does not exist (see configs/accelerate/)")
        return ["accelerate", "launch", "--config_file", launch.config, "--num_processes",
                str(launch.processes * launch.machines), "--num_machines", str(launch.machines),
                "--machine_rank", str(launch.machine_rank), *rendezvous, "-m", stage]
    return ["torchrun", "--nproc_per_node", str(launch.processes), "--nnodes", str(launch.machines),
            "--node_rank", str(launch.machine_rank), "--master_addr", launch.main_address,
            "--master_port", str(launch.main_port), "-m", stage]


def fsdp_on_cpu() -> dict:
    """In a stage process training on the CPU (lancy.training calls it there) that `accelerate launch` started with
    an FSDP config: set up accelerate's shared state as FSDP over gloo, and return the TrainingArguments keys that
    make the Trainer use that state. Elsewhere (no FSDP config, one process): nothing, {}.

    accelerate 1.15 picks FSDP for accelerators only: `AcceleratorState.__init__` (accelerate/state.py, the
    `elif self.distributed_type in [DistributedType.MULTI_GPU, ...]` at line 986) sets `distributed_type = FSDP`
    and keeps the FSDP plugin only for MULTI_GPU, MULTI_XPU, ...; a CPU process group is MULTI_CPU, so the
    Trainer silently wraps the model in DDP with the full weights on every process. PyTorch's FSDP2
    (`fully_shard`) itself runs on the CPU over gloo, and so do accelerate's FSDP2 preparation, its sharded
    checkpoints (torch.distributed.checkpoint) and the gathering of the full weights (tests/test_fsdp.py):
    only that one choice is made here, before the Trainer builds its own Accelerator on the same shared state.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true" or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return {}
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = Accelerator(cpu=True).state  # joins the gloo process group; the state is MULTI_CPU, its plugin dropped
    plugin = FullyShardedDataParallelPlugin()  # from the launcher's FSDP_* variables, as accelerate reads them
    if state.mixed_precision != "no":  # what AcceleratorState does for the plugin on GPUs
        plugin.set_mixed_precision(state.mixed_precision)
    # AcceleratorState copies PartialState's fields at every construction: both say FSDP
    PartialState().distributed_type = state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    if state.is_main_process:
        print(f"FSDP{plugin.fsdp_version} on {state.num_processes} CPU processes over gloo", flush=True)
    return {"accelerator_config": {"use_configured_state": True}}  # TrainingArguments keeps this state


def main() -> None:
    stage = sys.argv[1]
    launch = P.load(PARAMS).launch
    cmd = command(stage, launch)
    if cmd is None:
        sys.argv = [stage]
        runpy.run_module(stage, run_name="__main__")
        return
    beside_python = os.path.join(os.path.dirname(sys.executable), cmd[0])  # the environment's own launcher
    executable = beside_python if os.path.exists(beside_python) else shutil.which(cmd[0])
    if executable is None:
        raise LancyError(f"{cmd[0]} is not installed in this environment; it is needed for `launch` params > 1")
    print(" ".join(cmd), flush=True)
    os.execv(executable, cmd)


if __name__ == "__main__":
    run_stage(main)
