"""GRPO reward functions: plain functions in a registry keyed by task kind.

Each scores one completion against its record's reference `answer` (and valid `labels`), reading it the
same way the evaluation does (lancy.answers). `task_reward` is the function handed to TRL's GRPOTrainer:
it scores every completion with the reward of its own row's task, so one GRPO run can mix tasks.
"""
from lancy.answers import math_correct, parse_label, syntax_valid, token_f1


def label_reward(completion: str, answer: str, labels: list[str]) -> float:
    """1 when the completion starts with the reference label word or letter, else 0 (other words are invalid)."""
    return float(parse_label(completion, labels) == answer)


def math_reward(completion: str, answer: str, labels: list[str]) -> float:
    """1 when the completion's final number (or exact answer) equals the reference, else 0."""
    return float(math_correct(completion, answer))


def overlap_reward(completion: str, answer: str, labels: list[str]) -> float:
    """Token F1 between the completion and the reference answer (QA, instructions)."""
    return token_f1(completion, answer)


def syntax_reward(completion: str, answer: str, labels: list[str]) -> float:
    """1 when the completion parses as Python (it is compiled, never run), else 0."""
    return float(syntax_valid(completion))


REWARDS = {
    "classification": label_reward,
    "multiple_choice": label_reward,
    "math": math_reward,
    "qa": overlap_reward,
    "instruction": overlap_reward,
    "code": syntax_reward,
}


def task_reward(prompts, completions, answer, task, labels, **kwargs) -> list[float]:
    """TRL reward function: the dataset's `answer`, `task` and `labels` columns arrive as lists."""
    return [REWARDS[t](c, a, ls) for c, a, t, ls in zip(completions, answer, task, labels, strict=True)]
