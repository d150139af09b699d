"""grpo: TRL's GRPOTrainer on models/sft, rewarded per task (label match, final-number match).

Writes models/grpo/, metrics/grpo/ (DVCLive) and logs/grpo/ (TensorBoard).
"""
from pathlib import Path

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from lancy import params as P
from lancy.errors import run_stage
from lancy.files import read_jsonl, require
from lancy.models import load_model
from lancy.rewards import task_reward
from lancy.tokenization import load_tokenizer
from lancy.training import callbacks, fingerprint, finish, run_facts, train, training_arguments

PARAMS = ("seed", "model.attention", "grpo")
BASE, DATA = Path("models/sft"), Path("data/tokenized/rl.jsonl")
OUT, CHECKPOINTS = Path("models/grpo"), Path("checkpoints/grpo")


def main() -> None:
    p = P.load(PARAMS)
    g = p.grpo
    require(BASE, DATA)
    tokenizer = load_tokenizer(str(BASE))
    tokenizer.padding_side = "left"
    model = load_model(str(BASE), p.model.attention)
    prompts = Dataset.from_list(read_jsonl(DATA))
    facts = run_facts(model, g, g.max_completion_length, prompts=len(prompts), group_size=g.num_generations)
    config = GRPOConfig(
        **training_arguments(g, CHECKPOINTS, p.seed),
        num_generations=g.num_generations, beta=g.beta, max_completion_length=g.max_completion_length,
        temperature=g.temperature,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=task_reward, args=config, train_dataset=prompts,
                          processing_class=tokenizer, callbacks=callbacks("grpo", facts))
    resumed_from = train(trainer, CHECKPOINTS, fingerprint(P.to_dict(p), [BASE, DATA]))
    finish(trainer, tokenizer, OUT, CHECKPOINTS, {**facts, "resumed_from_step": resumed_from})


if __name__ == "__main__":
    run_stage(main)
