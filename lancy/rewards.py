"""GRPO reward functions: plain functions in a registry keyed by task kind.

Each scores one completion against its record's reference `answer` (and valid `labels`), reading it the
same way the evaluation does (lancy.answers). `task_reward` is the function handed to TRL's GRPOTrainer:
it scores every completion with the reward of its own row's task, so one GRPO run can mix tasks.
"""
from lancy.answers import final_number, math_correct, parse_label, syntax_valid, token_f1


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


def execution_reward(completion: str, answer: str, labels: list[str]) -> float:
    """1 when the completion runs to the end without an error in the sandbox (lancy.sandbox), else 0."""
    from lancy.sandbox import run_code

    return float(syntax_valid(completion) and run_code(completion.strip("\n"))[0])


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
    return _by_task(REWARDS, completions, answer, task, labels)


def task_reward_executing_code(prompts, completions, answer, task, labels, **kwargs) -> list[float]:
    """As task_reward, but code completions are run in the sandbox instead of only compiled."""
    return _by_task({**REWARDS, "code": execution_reward}, completions, answer, task, labels)


def _by_task(rewards: dict, completions, answer, task, labels) -> list[float]:
    return [rewards[t](c, a, ls) for c, a, t, ls in zip(completions, answer, task, labels, strict=True)]


def format_reward(prompts, completions, task, labels, **kwargs) -> list[float]:
    """1 when a completion has its task's shape, right or wrong: exactly one label word or letter, a final
    '#### <number>', non-empty text, or code that compiles."""
    def shaped(completion: str, kind: str, valid: list[str]) -> bool:
        if kind in ("classification", "multiple_choice"):
            return parse_label(completion, valid) is not None and len(completion.split()) == 1
        if kind == "math":
            return "####" in completion and final_number(completion) is not None
        return syntax_valid(completion) if kind == "code" else bool(completion.strip())

    return [float(shaped(c, t, ls)) for c, t, ls in zip(completions, task, labels, strict=True)]
