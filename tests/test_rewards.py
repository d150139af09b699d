"""lancy.rewards: GRPO rewards read completions the way evaluation does, per row's own task and labels."""
import pytest

from lancy.catalog import CATALOG, TASKS
from lancy.harmonize import to_record
from lancy.rewards import (
    REWARDS,
    SYNTAX_CREDIT,
    code_reward,
    label_reward,
    math_reward,
    overlap_reward,
    task_reward,
    task_reward_compile_only,
)

SENTIMENT = ["negative", "positive"]
RELATION = ["not_equivalent", "equivalent"]
LETTERS4 = ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    ("completion", "answer", "labels", "reward"),
    [
        (" positive", "positive", SENTIMENT, 1.0),
        (" Positive.", "positive", SENTIMENT, 1.0),
        (" positive\nReview: more text", "positive", SENTIMENT, 1.0),
        (" negative", "positive", SENTIMENT, 0.0),
        (" great", "positive", SENTIMENT, 0.0),  # not a label word: invalid, never rewarded
        ("", "positive", SENTIMENT, 0.0),
        (" not_equivalent", "not_equivalent", RELATION, 1.0),
        (" equivalent", "not_equivalent", RELATION, 0.0),
        (" not_equivalent", "equivalent", RELATION, 0.0),
        (" positive", "positive", RELATION, 0.0),  # a word of another dataset's labels
        # option letters (multiple choice)
        (" B", "B", LETTERS4, 1.0),
        ("B", "B", LETTERS4, 1.0),
        (" b.", "B", LETTERS4, 1.0),
        ("(C)", "C", LETTERS4, 1.0),
        (" [C] since", "C", LETTERS4, 1.0),
        ("(C)", "B", LETTERS4, 0.0),
        (" E", "E", LETTERS4, 0.0),  # not among this row's options
        (" J", "J", list("ABCDEFGHIJ"), 1.0),
        (" Answer: B", "B", LETTERS4, 0.0),
        # AdaptLLM rows: the labels are the row's own (lower-cased) options
        (" No", "no", ["yes", "no"], 1.0),
        (" yes", "no", ["yes", "no"], 0.0),
    ],
)
def test_label_reward(completion, answer, labels, reward):
    assert label_reward(completion, answer, labels) == reward


@pytest.mark.parametrize(
    ("completion", "answer", "reward"),
    [
        (" 48/2 = 24, 48 + 24 = 72\n#### 72", "72", 1.0),
        ("#### 72", "72", 1.0),
        ("72", "72", 1.0),
        ("#### 71", "72", 0.0),
        (" 70 + 2 = 72\n#### 71", "72", 0.0),  # the number after '####' counts, not an earlier one
        ("#### 1,234", "1234", 1.0),
        ("#### 7.50", "7.5", 1.0),
        ("I do not know", "72", 0.0),
        ("", "72", 0.0),
        # exact, non-numeric answers (deepmind math_dataset)
        (" True", "True", 1.0),
        ("True\nQuestion: Is 9 prime?", "True", 1.0),
        (" False", "True", 0.0),
        (" 1", "True", 0.0),
        (" x**2 + 1", "x**2 + 1", 1.0),
        (" x**2 + 1\n", "x**2 + 1", 1.0),
        (" x**2 - 1", "x**2 + 1", 0.0),
        (" -3", "-3", 1.0),
        (" 3", "-3", 0.0),
    ],
)
def test_math_reward(completion, answer, reward):
    assert math_reward(completion, answer, []) == reward


@pytest.mark.parametrize(
    ("completion", "answer", "check"),
    [
        (" The revenue grew 5%.", "The revenue grew 5%.", lambda r: r == 1.0),  # exact answer
        (" revenue grew", "The revenue grew 5%.", lambda r: 0.0 < r < 1.0),  # partial overlap
        (" The revenue grew 5% and margins fell sharply.", "The revenue grew 5%.", lambda r: 0.0 < r < 1.0),
        (" Costs fell.", "The revenue grew 5%.", lambda r: r == 0.0),  # no overlap
        ("", "The revenue grew 5%.", lambda r: r == 0.0),
    ],
)
def test_overlap_reward(completion, answer, check):
    reward = overlap_reward(completion, answer, [])
    assert type(reward) is float and check(reward), reward


def test_overlap_reward_partial_is_token_f1():
    # "revenue grew" vs "the revenue grew 5": precision 2/2, recall 2/4 -> F1 2/3
    assert overlap_reward(" revenue grew", "The revenue grew 5%.", []) == pytest.approx(2 / 3)


SUM_TESTS = """import unittest

class TestCases(unittest.TestCase):
    def test_small(self):
        self.assertEqual(task_func(1, 2), 3)

    def test_zero(self):
        self.assertEqual(task_func(0, 0), 0)

    def test_negative(self):
        self.assertEqual(task_func(-1, -2), -3)
"""
SUM_ROW = {"instruct_prompt": "Add two numbers.", "code_prompt": "def task_func(a, b):\n",
           "canonical_solution": "    return a + b\n", "test": SUM_TESTS}


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("def f():\n    return 1", SYNTAX_CREDIT),
        ("\nimport os\ndef task_func(path):\n    return os.path.exists(path)\n", SYNTAX_CREDIT),
        ("x = 1", SYNTAX_CREDIT),
        ("def f(:", 0.0),
        ("x = [1, 2", 0.0),
        # compiles, but does nothing: never rewarded
        ("", 0.0),
        ("\n", 0.0),
        ("pass", 0.0),
        ("...", 0.0),
        ("# a comment", 0.0),
        ('"""A docstring."""', 0.0),
        ("import os\nfrom math import pi", 0.0),
        ("def task_func(a, b):\n    pass", 0.0),
        ('def task_func(a, b):\n    """Add."""\n    ...', 0.0),
        ("class A:\n    pass", 0.0),
    ],
)
def test_code_reward_without_tests_is_the_syntax_credit_at_most(completion, reward):
    assert code_reward(completion, "", []) == reward
    assert code_reward(completion, "", [], tests=SUM_TESTS, execute=False) == reward


def test_code_reward_is_the_share_of_unit_tests_passed():
    record, _ = to_record(CATALOG["bigcodebench"], SUM_ROW)
    assert record["tests"] == SUM_TESTS
    assert code_reward(record["completion"], record["answer"], [], tests=record["tests"]) == 1.0
    half_right = "\ndef task_func(a, b):\n    return abs(a + b)\n"  # right on 2 of the 3 tests
    assert code_reward(half_right, "", [], tests=SUM_TESTS) == pytest.approx(SYNTAX_CREDIT + 0.9 * 2 / 3)
    assert code_reward("\ndef task_func(a, b):\n    return None", "", [], tests=SUM_TESTS) == SYNTAX_CREDIT
    assert code_reward("\ndef task_func(a, b):\n    pass", "", [], tests=SUM_TESTS) == 0.0  # never run
    assert code_reward("\n", "", [], tests=SUM_TESTS) == 0.0
    # a printed fake result line is not a result: the score carries a nonce the code cannot know
    forged = "\nprint('0' * 32, 3, 3)\ndef task_func(a, b):\n    return None"
    assert code_reward(forged, "", [], tests=SUM_TESTS) == SYNTAX_CREDIT


def test_compile_only_rewards_never_run_the_completion(tmp_path):
    marker = tmp_path / "lancy_pwned"
    completion = f"\nimport pathlib\ndef task_func(a, b):\n    pathlib.Path({str(marker)!r}).touch()\n    return a + b"
    rewards = task_reward_compile_only(None, [completion], ["x"], ["code"], [[]], tests=[SUM_TESTS])
    assert rewards == [SYNTAX_CREDIT]
    assert not marker.exists()


def test_rewards_are_floats():
    assert type(label_reward(" positive", "positive", SENTIMENT)) is float
    assert type(math_reward("#### 1", "2", [])) is float
    assert type(overlap_reward("a", "a", [])) is float
    assert type(code_reward("x = 1", "", [])) is float
    assert type(code_reward("", "", [])) is float


def test_registry_covers_the_task_kinds():
    assert REWARDS == {
        "classification": label_reward,
        "multiple_choice": label_reward,
        "math": math_reward,
        "qa": overlap_reward,
        "instruction": overlap_reward,
        "code": code_reward,
    }
    assert set(REWARDS) == set(TASKS) - {"corpus"}


def test_task_reward_mixed_tasks_in_one_call():
    rows = [
        # (completion, answer, task, labels, reward)
        (" positive", "positive", "classification", SENTIMENT, 1.0),
        ("#### 72", "72", "math", [], 1.0),
        (" negative", "positive", "classification", SENTIMENT, 0.0),
        ("#### 71", "72", "math", [], 0.0),
        (" equivalent", "equivalent", "classification", RELATION, 1.0),
        (" 72", "negative", "classification", SENTIMENT, 0.0),
        (" positive", "5", "math", [], 0.0),
        (" (B)", "B", "multiple_choice", LETTERS4, 1.0),
        (" True", "True", "math", [], 1.0),
        (" the revenue grew", "Revenue grew.", "qa", [], 0.8),
        (" Revenue grew.", "Revenue grew.", "instruction", [], 1.0),
        ("def f():\n    return 1", "def f(): return 1", "code", [], SYNTAX_CREDIT),  # no tests: compiled only
        ("def f(:", "def f(): return 1", "code", [], 0.0),
        ("pass", "def f(): return 1", "code", [], 0.0),
    ]
    completions, answers, tasks, labels, expected = (list(column) for column in zip(*rows, strict=True))
    prompts = [f"prompt {i}" for i in range(len(rows))]
    rewards = task_reward(prompts, completions, answer=answers, task=tasks, labels=labels,
                          source=["x"] * len(rows), completion_ids=[[1]] * len(rows),
                          trainer_state=None)  # TRL passes the other dataset columns and extra kwargs
    assert rewards == pytest.approx(expected)


def test_task_reward_on_harmonized_records():
    """The records' own columns (answer, task, labels) are what GRPO hands the reward function."""
    records = [
        to_record(CATALOG["mmlu"], {"question": "2 + 2?", "subject": "", "choices": ["3", "4"], "answer": 1})[0],
        to_record(CATALOG["imdb"], {"text": "Great.", "label": 1})[0],
        to_record(CATALOG["gsm8k"], {"question": "1 + 1?", "answer": "1 + 1 = 2\n#### 2"})[0],
        to_record(CATALOG["bigcodebench"], SUM_ROW)[0],
    ]
    columns = {key: [r[key] for r in records] for key in ("answer", "task", "labels", "tests", "source")}
    completions = [r["completion"] for r in records]
    assert task_reward([r["prompt"] for r in records], completions, **columns) == [1.0, 1.0, 1.0, 1.0]
    wrong = [" A", " negative", " #### 3", "\ndef task_func(a, b):\n    return None"]
    assert task_reward([r["prompt"] for r in records], wrong, **columns) == [0.0, 0.0, 0.0, SYNTAX_CREDIT]


def test_task_reward_rejects_misaligned_columns():
    with pytest.raises(ValueError):
        task_reward(["p", "q"], [" positive", " negative"], answer=["positive"], task=["classification"] * 2,
                    labels=[SENTIMENT] * 2)
    with pytest.raises(ValueError):
        task_reward(["p", "q"], [" positive", " negative"], answer=["positive"] * 2, task=["classification"] * 2,
                    labels=[SENTIMENT])


def test_task_reward_needs_the_labels_column():
    with pytest.raises(TypeError):
        task_reward(["p"], [" positive"], answer=["positive"], task=["classification"])


def test_format_reward_checks_the_answer_shape_only():
    from lancy.rewards import format_reward

    completions = [" negative", " positive, surely", " 3 + 4 = 7\n#### 7", " it is 7", " B", "\nx = 1", "\npass"]
    tasks = ["classification", "classification", "math", "math", "multiple_choice", "code", "code"]
    labels = [["negative", "positive"]] * 2 + [[], [], ["A", "B", "C", "D"], [], []]
    assert format_reward(None, completions, tasks, labels) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
