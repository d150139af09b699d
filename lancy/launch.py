"""Launching a training stage on one process or many: `python -m lancy.launch stages.sft`.

With `launch.processes: 1` on one machine and no accelerate config, the stage runs in this process.
Otherwise it runs under torchrun (DDP; gloo on CPU, NCCL on GPUs), or under `accelerate launch` with
`launch.config` (the FSDP and DeepSpeed files in configs/accelerate/). Several machines: run the same
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
