"""lancy.rewards: GRPO rewards read completions the way evaluation does, per row's own task and labels."""
import pytest

from lancy.catalog import CATALOG, TASKS
from lancy.harmonize import to_record
from lancy.rewards import REWARDS, label_reward, math_reward, overlap_reward, syntax_reward, task_reward

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


def test_syntax_reward():
    assert syntax_reward("def f():\n    return 1", "def g(): pass", []) == 1.0
    assert syntax_reward("def f(:", "def g(): pass", []) == 0.0
    assert syntax_reward("x = [1, 2", "", []) == 0.0


def test_syntax_reward_compiles_but_never_runs_the_completion(tmp_path):
    import os

    marker = tmp_path / "lancy_pwned"
    existed = os.path.exists("/tmp/lancy_pwned")
    for path in (marker, "/tmp/lancy_pwned"):
        completion = f'import os; os.system("touch {path}")'
        assert syntax_reward(completion, "", []) == 1.0  # valid Python: compiled, and that is all
    assert not marker.exists()
    assert existed or not os.path.exists("/tmp/lancy_pwned")


def test_syntax_reward_of_the_reference_completion_is_full():
    row = {"instruct_prompt": "Write task_func.", "code_prompt": "import os\ndef task_func(path):\n",
           "canonical_solution": "    return os.path.exists(path)\n"}
    record, _ = to_record(CATALOG["bigcodebench"], row)
    assert syntax_reward(record["completion"], record["answer"], record["labels"]) == 1.0


def test_rewards_are_floats():
    assert type(label_reward(" positive", "positive", SENTIMENT)) is float
    assert type(math_reward("#### 1", "2", [])) is float
    assert type(overlap_reward("a", "a", [])) is float
    assert type(syntax_reward("x = 1", "", [])) is float


def test_registry_covers_the_task_kinds():
    assert REWARDS == {
        "classification": label_reward,
        "multiple_choice": label_reward,
        "math": math_reward,
        "qa": overlap_reward,
        "instruction": overlap_reward,
        "code": syntax_reward,
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
        ("def f():\n    return 1", "def f(): return 1", "code", [], 1.0),
        ("def f(:", "def f(): return 1", "code", [], 0.0),
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
    ]
    columns = {key: [r[key] for r in records] for key in ("answer", "task", "labels", "source")}
    completions = [r["completion"] for r in records]
    assert task_reward([r["prompt"] for r in records], completions, **columns) == [1.0, 1.0, 1.0]
    wrong = [" A", " negative", " #### 3"]
    assert task_reward([r["prompt"] for r in records], wrong, **columns) == [0.0, 0.0, 0.0]


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

    completions = [" negative", " positive, surely", " 3 + 4 = 7\n#### 7", " it is 7", " B", "\nx = 1"]
    tasks = ["classification", "classification", "math", "math", "multiple_choice", "code"]
    labels = [["negative", "positive"]] * 2 + [[], [], ["A", "B", "C", "D"], []]
    assert format_reward(None, completions, tasks, labels) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]


def test_execution_reward_runs_code_and_contains_malicious_code(tmp_path):
    from lancy.rewards import execution_reward, task_reward_executing_code

    outside = tmp_path / "escaped"
    assert execution_reward("\ndef f(x):\n    return x * 2\nassert f(2) == 4", "", []) == 1.0
    assert execution_reward("\nassert 1 == 2", "", []) == 0.0
    assert execution_reward("\nwhile True:\n    pass", "", []) == 0.0  # killed by the timeout
    attacks = [
        f"open({str(outside)!r}, 'w').write('x')",
        f"import os\nos.system('touch {outside}')",
        f"import subprocess\nsubprocess.run(['touch', {str(outside)!r}])",
        "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
    ]
    for attack in attacks:
        assert execution_reward("\n" + attack, "", []) == 0.0, attack
    assert not outside.exists() and tmp_path.exists()
    rewards = task_reward_executing_code(None, ["\nprint(1)", " positive"], ["", "positive"],
                                         ["code", "classification"], [[], ["negative", "positive"]])
    assert rewards == [1.0, 1.0]
