"""GRPO reward functions: plain functions in a registry keyed by task kind.

Each scores one completion against its record's reference `answer` (and valid `labels`), reading it the
same way the evaluation does (lancy.answers); the record's other columns arrive as keywords (`tests`: a
code row's unit tests). `task_reward` is the function handed to TRL's GRPOTrainer: it scores every
completion with the reward of its own row's task, so one GRPO run can mix tasks.

Code earns 0 when it does not compile or does nothing (empty, only `pass`, `...`, imports, comments or
docstrings); otherwise SYNTAX_CREDIT for compiling, plus the rest in proportion to the share of the row's
unit tests that pass when run in lancy.sandbox. A share rather than all-or-nothing, so that a group whose
completions all fail some test still tells better from worse; evaluation reports the strict pass@1.
"""
from lancy.answers import final_number, math_correct, parse_label, substantive_code, token_f1
from lancy.sandbox import run_tests

SYNTAX_CREDIT = 0.1  # the most that code can earn without passing a test


def label_reward(completion: str, answer: str, labels: list[str], **_) -> float:
    """1 when the completion starts with the reference label word or letter, else 0 (other words are invalid)."""
    return float(parse_label(completion, labels) == answer)


def math_reward(completion: str, answer: str, labels: list[str], **_) -> float:
    """1 when the completion's final number (or exact answer) equals the reference, else 0."""
    return float(math_correct(completion, answer))


def overlap_reward(completion: str, answer: str, labels: list[str], **_) -> float:
    """Token F1 between the completion and the reference answer (QA, instructions)."""
    return token_f1(completion, answer)


def code_reward(completion: str, answer: str, labels: list[str], tests: str = "", execute: bool = True, **_) -> float:
    """0 for code that does not compile or does nothing; else SYNTAX_CREDIT, plus (1 - SYNTAX_CREDIT) x the
    share of the unit tests that pass in the sandbox (none are run without tests, or with execute=False)."""
    if not substantive_code(completion):
        return 0.0
    if not (tests and execute):
        return SYNTAX_CREDIT
    return SYNTAX_CREDIT + (1 - SYNTAX_CREDIT) * run_tests(completion.strip("\n"), tests).share


REWARDS = {
    "classification": label_reward,
    "multiple_choice": label_reward,
    "math": math_reward,
    "qa": overlap_reward,
    "instruction": overlap_reward,
    "code": code_reward,
}


def task_reward(prompts, completions, answer, task, labels, tests=None, **kwargs) -> list[float]:
    """TRL reward function: the dataset's `answer`, `task`, `labels` and `tests` columns arrive as lists;
    code rows with unit tests have them run in the sandbox."""
    return _by_task(completions, answer, task, labels, tests, execute=True)


def task_reward_compile_only(prompts, completions, answer, task, labels, tests=None, **kwargs) -> list[float]:
    """As task_reward, but generated code is never run: code earns at most SYNTAX_CREDIT
    (`grpo.code_execution: false`)."""
    return _by_task(completions, answer, task, labels, tests, execute=False)


def _by_task(completions, answer, task, labels, tests, execute: bool) -> list[float]:
    tests = [""] * len(completions) if tests is None else tests
    rows = zip(completions, answer, task, labels, tests, strict=True)
    return [REWARDS[t](c, a, ls, tests=ts or "", execute=execute) for c, a, t, ls, ts in rows]


def source_reward(name: str):
    """A reward function that scores the rows of one source alone (None for the others), as `task_reward`
    without running code. The GRPO stage gives it weight 0, so it changes no advantage; TRL logs it per step as
    `rewards/<name>/mean`: the reward curve of one dataset of a mixed run."""
    def reward(prompts, completions, answer, task, labels, source, **kwargs) -> list[float | None]:
        rows = zip(completions, answer, task, labels, source, strict=True)
        return [REWARDS[t](c, a, ls, execute=False) if s == name else None for c, a, t, ls, s in rows]

    reward.__name__ = name
    return reward


def format_reward(prompts, completions, task, labels, **kwargs) -> list[float]:
    """1 when a completion has its task's shape, right or wrong: exactly one label word or letter, a final
    '#### <number>', non-empty text, or code that compiles and does something."""
    def shaped(completion: str, kind: str, valid: list[str]) -> bool:
        if kind in ("classification", "multiple_choice"):
            return parse_label(completion, valid) is not None and len(completion.split()) == 1
        if kind == "math":
            return "####" in completion and final_number(completion) is not None
        return substantive_code(completion) if kind == "code" else bool(completion.strip())

    return [float(shaped(c, t, ls)) for c, t, ls in zip(completions, task, labels, strict=True)]
