"""GRPO reward functions: plain functions in a registry keyed by task kind.

Each scores one completion against the record's reference `answer`, reading it the same way the
evaluation does (lancy.answers). `task_reward` is the function handed to TRL's GRPOTrainer: it scores
every completion with the reward of its own row's task, so one GRPO run can mix tasks.
"""
from lancy.answers import final_number, parse_label
from lancy.catalog import CATALOG


def label_reward(completion: str, answer: str, source: str) -> float:
    """1 when the completion starts with the reference label word, else 0 (other words are invalid)."""
    return float(parse_label(completion, CATALOG[source].labels) == answer)


def math_reward(completion: str, answer: str, source: str) -> float:
    """1 when the completion's final number equals the reference number, else 0."""
    return float(final_number(completion) == answer)


REWARDS = {"classification": label_reward, "math": math_reward}


def task_reward(prompts, completions, answer, task, source, **kwargs) -> list[float]:
    """TRL reward function: the dataset's `answer`, `task` and `source` columns arrive as lists."""
    return [REWARDS[t](c, a, s) for c, a, t, s in zip(completions, answer, task, source, strict=True)]
