"""What every training stage shares: arguments, logging, resumption and saving.

- Loss curves go to DVCLive (metrics/<stage>/, step = optimizer step) and TensorBoard (logs/<stage>/).
- Checkpoints go to checkpoints/<stage>/ (git-ignored, not a DVC output, so DVC never deletes them):
  a stage killed midway resumes from its last checkpoint when re-run with the same inputs.
- The final model is written to a temporary folder and renamed into place only when complete.
"""
import functools
import hashlib
import json
import os
import shutil
import types
from pathlib import Path

from transformers import Trainer, TrainerCallback
from transformers.integrations import DVCLiveCallback, TensorBoardCallback

from lancy.errors import LancyError
from lancy.files import atomic_dir
from lancy.launch import fsdp_on_cpu
from lancy.models import (
    device_and_dtype,
    has_router_loss,
    labelled_hidden_states,
    load_model,
    memory_estimate,
    moe_facts,
    parameter_counts,
    plain_lm_head,
)


def stage_seed(section, seed: int) -> int:
    """A training stage's seed: its section's own `seed` when set (>= 0), else the run's `seed`. Varying a stage's
    seed alone replicates that stage and what follows, sharing everything before it (lancy.compare)."""
    return seed if section.seed < 0 else section.seed


def training_arguments(section, checkpoint_dir: Path, seed: int) -> dict:
    """Keyword arguments shared by TrainingArguments and the GRPO config, from a stage's params section."""
    device, dtype = device_and_dtype()
    seed = stage_seed(section, seed)
    quarter = max(1, section.max_steps // 4)
    return dict(
        output_dir=str(checkpoint_dir),
        max_steps=-1 if section.epochs > 0 else section.max_steps,  # -1: num_train_epochs decides
        num_train_epochs=section.epochs or 1,
        per_device_train_batch_size=section.batch_size,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        learning_rate=section.learning_rate,
        weight_decay=section.weight_decay,
        warmup_steps=section.warmup_ratio,  # a float < 1 is a fraction of max_steps
        lr_scheduler_type=section.lr_scheduler,
        logging_steps=section.logging_steps or quarter,
        save_strategy="epoch" if section.epochs > 0 and not section.save_steps else "steps",
        save_steps=section.save_steps or quarter,
        save_total_limit=section.save_total_limit,
        activation_checkpointing=section.activation_checkpointing,  # TRL defaults it on (gradient_checkpointing)
        seed=seed,
        data_seed=seed,
        bf16=str(dtype) == "torch.bfloat16",
        use_cpu=device == "cpu",
        ddp_find_unused_parameters=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **(fsdp_on_cpu() if device == "cpu" else {}),  # accelerate's FSDP config on the CPU (lancy.launch)
    )


def liger_arguments(enabled: bool) -> dict:
    """TrainingArguments for `model.liger_kernel`: transformers patches Liger's Triton kernels into the model
    (fused linear cross-entropy, which never materializes the logits, RMSNorm, RoPE, SwiGLU). CUDA only; the
    memory it frees is for larger micro-batches (`batch_size`). It replaces lancy's own fused and chunked heads
    (the stages then skip them). bench/gpu_sft.py checks Liger's loss against the model's own before timing."""
    if not enabled:
        return {}
    import importlib.util

    if device_and_dtype()[0] != "cuda" or importlib.util.find_spec("liger_kernel") is None:
        raise LancyError("params key `model.liger_kernel` needs CUDA and the liger-kernel package (pip install -r "
                         "requirements-gpu.txt); set it to false on this machine")
    return {"use_liger_kernel": True}


def fused_lm_head(model) -> None:
    """Give a causal LM TRL's fused LM head: `model(..., labels=labels, fused_lm_head=True)` projects through the
    head only the positions whose next token is labelled and returns their mean negative log-likelihood as
    `loss`: the model's own loss and gradients, without the logits of the unlabelled positions
    (tests/test_packing.py).

    For SFT, whose labels are the completions only (12% of the embedded default's tokens), this skips most of
    the head's matrix products and softmaxes. TRL's chunked head recomputes the logits in its backward pass, so
    on the CPU it is faster only while under about half of the positions are labelled (measured:
    docs/results-history.md); pretraining, where every position is, keeps the model's own head.
    Call it before `apply_lora` (PEFT then wraps the patched model).
    """
    from trl.trainer.utils import add_fused_lm_head

    score_labelled_positions_only()
    add_fused_lm_head(model)


def score_labelled_positions_only() -> None:
    """Make TRL's fused LM head (GRPO's, and `fused_lm_head`'s) score only the labelled positions on every device.

    TRL 1.16 does so only where its Triton kernel runs (CUDA, XPU) and scores every position elsewhere, so
    that compilers such as Neuron's (XLA) see fixed shapes. Eager PyTorch on the CPU has no such need, and
    scoring the prompts too cost GRPO half of each step on 2 CPU cores, for the same losses (docs/results-history.md).
    In `trl.trainer.utils`, `_use_triton` makes only that choice; which kernel runs is decided in
    `trl.kernels.chunked_logprob`, untouched. tests/test_packing.py checks which positions reach the head, so a
    TRL upgrade that moves the choice fails there.
    """
    from trl.trainer import utils

    utils._use_triton = _compact_scoring


def _compact_scoring(device) -> bool:
    return device.type != "xla"


def chunked_lm_loss(model) -> bool:
    """Train a causal LM with PyTorch's chunked linear cross-entropy (`F.linear_cross_entropy`): with labels and
    gradients on, its forward runs the backbone and computes the loss and the head's gradients chunk by chunk of
    positions, so the (positions x vocabulary) logits are never held whole and not recomputed in the backward.
    Its loss is the model's own (the mean over the labelled next tokens, or their sum over `num_items_in_batch`
    under gradient accumulation), and so are its gradients, to float rounding (tests/test_packing.py).

    Pretraining uses it with `pretrain.chunked_loss`: every position is labelled there, and a 16 x 256-token step
    of the embedded default ran 1.18-1.30x faster on 2 CPU cores (docs/performance.md). It applies on the CPU, in
    fp32, to decoder-only models whose logits are the plain linear map of the last hidden states; a model with
    scaled or soft-capped logits, a router's auxiliary loss, or an encoder-decoder keeps its own head, and so does
    every forward pass without labels or without gradients (evaluation, generation). Returns whether it applied.
    """
    import torch

    config = model.config.get_text_config()
    if (device_and_dtype() != ("cpu", torch.float32) or not plain_lm_head(model)
            or (has_router_loss(config) and getattr(config, "output_router_logits", False))):
        return False
    from transformers.modeling_outputs import CausalLMOutputWithPast

    original = model.forward
    options = torch.nn.LinearCrossEntropyOptions(acc_policy="accurate", chunking_method="aspect_ratio")

    @functools.wraps(type(model).forward)  # the signature, which the Trainer reads for num_items_in_batch
    def forward(self, *args, labels=None, num_items_in_batch=None, **kwargs):
        if labels is None or not torch.is_grad_enabled():
            extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
            return original(*args, labels=labels, **extra, **kwargs)
        hidden, targets = labelled_hidden_states(self, labels, *args, **{**kwargs, "use_cache": False})
        head = self.get_output_embeddings()  # looked up at each call: FSDP replaces it after patching
        loss = torch.nn.functional.linear_cross_entropy(hidden, head.weight, targets, linear_bias=head.bias,
                                                        reduction="sum", options=options)
        count = targets.numel() if num_items_in_batch is None else num_items_in_batch
        return CausalLMOutputWithPast(loss=loss / count)

    model.forward = types.MethodType(forward, model)
    return True


class FusedLossTrainer(Trainer):
    """A Trainer whose loss goes through the fused LM head (`fused_lm_head`): the labelled positions only."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        return super().compute_loss(model, {**inputs, "fused_lm_head": True}, *args, **kwargs)


def _save_model(model, folder: Path, lora, base: str | None, weights: dict | None = None) -> None:
    if lora is None or not lora.enabled or not lora.merge:
        # adapters alone: adapter_config.json names the base model folder
        model.save_pretrained(folder, state_dict=weights)
    elif lora.quantize == "none":
        model.merge_and_unload().save_pretrained(folder)
    else:  # merging into 4-/8-bit weights would round them: merge into the full-precision base instead
        from peft import PeftModel

        model.save_pretrained(folder / "adapters")
        merged = PeftModel.from_pretrained(load_model(base), folder / "adapters").merge_and_unload()
        shutil.rmtree(folder / "adapters")
        merged.save_pretrained(folder)


def data_shares(tokens_by_source: dict[str, int]) -> dict[str, float]:
    """The data mixture a stage trains on: each source's share of the tokens (or rows)."""
    total = sum(tokens_by_source.values()) or 1
    return {name: round(count / total, 4) for name, count in tokens_by_source.items()}


def run_facts(model, section, tokens_per_row: int, **extra) -> dict:
    """What a run is: parameters, device, precision, the attention actually used, batch and token budget."""
    device, dtype = device_and_dtype()
    counts = parameter_counts(model)
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    effective_batch = section.batch_size * processes * section.gradient_accumulation_steps
    return {
        **counts,
        **moe_facts(model),
        **memory_estimate(counts["total_params"]),
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "cpu_kernels": _cpu_kernels() if device == "cpu" else None,
        "attention": model.config._attn_implementation,
        "processes": processes,
        "effective_batch_size": effective_batch,
        "token_budget": None if section.epochs > 0 else section.max_steps * effective_batch * tokens_per_row,
        "epochs": section.epochs or None,
        **extra,
    }


def _cpu_kernels() -> str:
    """The instruction set of PyTorch's CPU kernels in this process: AVX2 wherever lancy.cpu_kernels applies."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def reward_summary(log_history: list[dict], sources: list[str] = ()) -> dict:
    """Whether GRPO learned, from its logged steps: the mean reward of the first and last quarter of the run, and
    the mean share of groups whose completions all got the same reward (those give no gradient at all). With
    `sources`, also each source's first and last quarter from its `rewards/<source>/mean` curve (steps without
    a row of the source log None or NaN and are left out)."""
    logs = [entry for entry in log_history if "reward" in entry and "frac_reward_zero_std" in entry]
    if not logs:
        return {}
    last_step = logs[-1]["step"]

    def quarter(key: str, low: float, high: float) -> float | None:
        values = [e.get(key) for e in logs if low < e["step"] / last_step <= high]
        values = [v for v in values if _number(v)]
        return sum(values) / len(values) if values else None

    first, last = quarter("reward", 0, 0.25), quarter("reward", 0.75, 1)
    summary = {
        "reward_first_quarter": logs[0]["reward"] if first is None else first,
        "reward_last_quarter": logs[-1]["reward"] if last is None else last,
        "frac_reward_zero_std": sum(e["frac_reward_zero_std"] for e in logs) / len(logs),
    }
    if sources:
        summary["reward_by_source"] = {
            name: {"first_quarter": quarter(f"rewards/{name}/mean", 0, 0.25),
                   "last_quarter": quarter(f"rewards/{name}/mean", 0.75, 1)}
            for name in sources
        }
    return summary


def _number(value) -> bool:
    """A loggable number: not None (TRL logs a reward that had no row at a step as None), not NaN."""
    return isinstance(value, int | float) and value == value


# What varies from run to run of the same inputs: kept out of the DVC-tracked curves and summaries (a fresh
# `dvc repro` then writes the same bytes, and `dvc.lock` stays as committed). The Trainer prints them.
WALL_CLOCK = ("runtime", "samples_per_second", "steps_per_second", "step_time")


def _steady(logs: dict | None) -> dict:
    return {k: v for k, v in (logs or {}).items() if not k.endswith(WALL_CLOCK)}


class StepDVCLiveCallback(DVCLiveCallback):
    """DVCLive's callback counts its own log calls; this one logs at the trainer's optimizer step."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if state.is_world_process_zero:
            for entry in state.log_history:  # resumed run: DVC wiped the old curves, replay them
                self.on_log(args, state, control, logs=entry, replay_step=entry["step"])

    def on_log(self, args, state, control, logs=None, replay_step=None, **kwargs):
        if self.live is not None:
            self.live.step = replay_step if replay_step is not None else state.global_step
        # None or NaN: a dataset's reward curve at a step that drew none of its rows; nothing to plot there
        logs = {k: v for k, v in _steady(logs).items() if k != "step" and (_number(v) or isinstance(v, str))}
        super().on_log(args, state, control, logs=logs, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        """Left to `finish`, which adds the stage's facts to the summary before closing."""


class SteadyTensorBoardCallback(TensorBoardCallback):
    """transformers' TensorBoard callback without the wall-clock values (nor the None that TRL logs for a dataset's
    reward at a step that drew none of its rows); `steady_events` rewrites its file."""

    def __init__(self, writer):
        super().__init__(tb_writer=writer)
        self.folder = Path(writer.log_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):  # None: a dataset's reward at a step without it
        logs = {k: v for k, v in _steady(logs).items() if v is not None}
        super().on_log(args, state, control, logs=logs, **kwargs)


def steady_events(folder: Path) -> None:
    """Rewrite a closed TensorBoard folder's event files as one file of the same events with no wall-clock
    time (every wall_time 0) under a fixed name: the same run then writes the same bytes. TensorBoard shows
    the curves by step (its relative and wall-time axes are flat)."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.summary.writer.record_writer import RecordWriter

    files = sorted(folder.glob("events.out.tfevents.*"))
    events = [event for path in files for event in LegacyEventFileLoader(str(path)).Load()]
    with open(folder / "events.out.tfevents.0.lancy.tmp", "wb") as f:
        writer = RecordWriter(f)
        for event in events[:1] + [e for e in events[1:] if not e.HasField("file_version")]:
            event.wall_time = 0.0
            writer.write(event.SerializeToString())
    for path in files:
        path.unlink()
    os.replace(folder / "events.out.tfevents.0.lancy.tmp", folder / "events.out.tfevents.0.lancy")


class FactsCallback(TrainerCallback):
    """Writes the run's facts (parameters, device, data) to TensorBoard at step 0."""

    def __init__(self, writer, facts: dict):
        self.writer, self.facts = writer, facts

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_facts(self.writer, self.facts)


def write_facts(writer, facts: dict) -> None:
    for key, value in facts.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(f"facts/{key}", value, 0)
        if isinstance(value, dict):  # the data mixture: one scalar per source
            for name, share in value.items():
                writer.add_scalar(f"facts/{key}/{name}", share, 0)
    writer.add_text("facts", "\n".join(f"- {k}: {v}" for k, v in facts.items()), 0)
    writer.flush()


def keep_untrained(model, tokenizer, out_dir: Path, stage: str, facts: dict) -> None:
    """max_steps 0: the model is saved as it is, with the run's facts in the stage's metrics and TensorBoard."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    live, writer = _loggers(stage)
    live.summary.update(facts)
    live.end()
    write_facts(writer, facts)
    writer.close()
    steady_events(Path(f"logs/{stage}"))


def _loggers(stage: str):
    """The stage's DVCLive folder (metrics/<stage>/) and TensorBoard writer (logs/<stage>/)."""
    from dvclive import Live
    from torch.utils.tensorboard import SummaryWriter

    return Live(f"metrics/{stage}", dvcyaml=False, save_dvc_exp=False, report=None), SummaryWriter(f"logs/{stage}")


def callbacks(stage: str, facts: dict) -> list:
    """Loss curves and step-0 facts, written by the main process only."""
    if int(os.environ.get("RANK", "0")) != 0:
        return []
    live, writer = _loggers(stage)
    return [StepDVCLiveCallback(live=live), SteadyTensorBoardCallback(writer), FactsCallback(writer, facts)]


def fingerprint(params: dict, inputs: list[Path]) -> str:
    """Identifies a run's inputs, so a checkpoint is only resumed by a run of the same params and data."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for root in inputs:
        files = sorted(p for p in Path(root).rglob("*") if p.is_file()) if Path(root).is_dir() else [Path(root)]
        for path in files:
            digest.update(f"{path}:{path.stat().st_size}".encode())
            with open(path, "rb") as f:  # head and tail: cheap even for multi-GB weights
                digest.update(f.read(1 << 20))
                f.seek(max(0, path.stat().st_size - (1 << 20)))
                digest.update(f.read(1 << 20))
    return digest.hexdigest()


def resume_checkpoint(trainer, checkpoint_dir: Path, run_id: str) -> str | None:
    """The last checkpoint of an interrupted run with the same inputs, else None (stale ones are removed)."""
    marker = checkpoint_dir / "run_id"
    resumable = marker.exists() and marker.read_text() == run_id
    checkpoint = last_complete_checkpoint(checkpoint_dir) if resumable else None
    trainer.accelerator.wait_for_everyone()  # every process has decided before the main one cleans up
    if not resumable and trainer.is_world_process_zero():
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        checkpoint_dir.mkdir(parents=True)
        marker.write_text(run_id)
    trainer.accelerator.wait_for_everyone()
    return checkpoint


def last_complete_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest checkpoint that was completely written (the Trainer writes trainer_state.json last): a run
    killed while saving leaves a partial one behind."""
    complete = [p for p in checkpoint_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return str(max(complete, key=lambda p: int(p.name.split("-")[1]))) if complete else None


def train(trainer, checkpoint_dir: Path, run_id: str) -> int:
    """Train, resuming from the checkpoint of an interrupted run when there is one; return the step resumed from."""
    checkpoint = resume_checkpoint(trainer, checkpoint_dir, run_id)
    if checkpoint:
        print(f"resuming from {checkpoint}")
    trainer.train(resume_from_checkpoint=checkpoint)
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


def finish(trainer, tokenizer, out_dir: Path, checkpoint_dir: Path, summary: dict, lora=None,
           base: str | None = None) -> None:
    """Save the model and tokenizer atomically, close the logs with the stage's facts, drop checkpoints.

    With LoRA (`lora.enabled`), the adapters are merged into the saved model, or saved alone when
    `lora.merge` is false; adapters trained on quantized weights are merged into the full-precision `base`.
    """
    # Under FSDP each process holds a shard of the weights: all of them gather the full ones for the main process
    weights = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if trainer.is_world_process_zero():
        with atomic_dir(out_dir) as tmp:
            _save_model(trainer.model, tmp, lora, base, weights)
            tokenizer.save_pretrained(tmp)
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, StepDVCLiveCallback):
                callback.live.summary.update(summary)
                callback.live.end()
            if isinstance(callback, SteadyTensorBoardCallback):  # closed by the callback when training ended
                steady_events(callback.folder)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
