"""grpo: TRL's GRPOTrainer on models/sft, rewarded per task (label, final number, F1, code's unit tests).

`grpo.max_steps: 0` skips it: the SFT model passes through.

Writes models/grpo/, metrics/grpo/ (DVCLive) and logs/grpo/ (TensorBoard).
"""
from collections import Counter
from pathlib import Path

from transformers import set_seed
from trl import GRPOConfig, GRPOTrainer

from lancy import params as P
from lancy.confinement import check as check_sandbox
from lancy.errors import run_stage
from lancy.files import require
from lancy.models import apply_lora, load_model
from lancy.rewards import format_reward, source_reward, task_reward, task_reward_compile_only
from lancy.tables import read_table
from lancy.tokenization import load_tokenizer
from lancy.training import (
    callbacks,
    data_shares,
    fingerprint,
    finish,
    keep_untrained,
    reward_summary,
    run_facts,
    score_labelled_positions_only,
    stage_seed,
    train,
    training_arguments,
)

PARAMS = ("seed", "model.attention", "grpo")
BASE, DATA = Path("models/sft"), Path("data/tokenized/rl")
OUT, CHECKPOINTS = Path("models/grpo"), Path("checkpoints/grpo")


def main() -> None:
    p = P.load(PARAMS)
    g = p.grpo
    require(BASE, DATA)
    tokenizer = load_tokenizer(str(BASE))
    tokenizer.padding_side = "left"
    set_seed(stage_seed(p.grpo, p.seed))  # LoRA adapters start from seeded random weights
    training = bool(g.max_steps or g.epochs)
    model = load_model(str(BASE), p.model.attention, g.lora.quantize if training else "none",
                       stage="grpo" if training else None)
    model = apply_lora(model, g.lora) if training else model
    prompts = read_table(DATA)
    if training and g.code_execution and "code" in prompts["task"]:
        check_sandbox()  # refused now, not at the first reward
    sources = list(prompts["source"])  # one read of the column: the data shares and the reward curves
    rows_by_source = dict(sorted(Counter(sources).items()))
    facts = run_facts(model, g, g.max_completion_length, prompts=len(prompts), group_size=g.num_generations,
                      data=data_shares(rows_by_source))
    if not training:
        keep_untrained(model, tokenizer, OUT, "grpo", facts)
        return
    rewards = [(task_reward if g.code_execution else task_reward_compile_only, 1.0)]
    if g.format_weight:
        rewards.append((format_reward, g.format_weight))
    if g.reward_model:
        rewards.append((g.reward_model, 1.0))  # TRL loads the folder as a sequence-classification model
    tasks = dict(zip(sources, prompts["task"], strict=True))
    curves = [name for name in rows_by_source if tasks[name] != "code"] if len(rows_by_source) > 1 else []
    rewards += [(source_reward(name), 0.0) for name in curves]  # logged per dataset, weight 0
    config = GRPOConfig(
        **training_arguments(g, CHECKPOINTS, p.seed),
        num_generations=g.num_generations, beta=g.beta, max_completion_length=g.max_completion_length,
        temperature=g.temperature, min_p=g.min_p or None, reward_weights=[weight for _, weight in rewards],
    )
    score_labelled_positions_only()  # the completions' log-probabilities, not the prompts'
    trainer = GRPOTrainer(model=model, reward_funcs=[reward for reward, _ in rewards], args=config,
                          train_dataset=prompts, processing_class=tokenizer, callbacks=callbacks("grpo", facts))
    resumed_from = train(trainer, CHECKPOINTS, fingerprint(P.to_dict(p), [BASE, DATA]))
    summary = {**facts, **reward_summary(trainer.state.log_history, curves), "resumed_from_step": resumed_from}
    finish(trainer, tokenizer, OUT, CHECKPOINTS, summary, g.lora, str(BASE))


if __name__ == "__main__":
    run_stage(main)
