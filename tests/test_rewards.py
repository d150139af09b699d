"""lancy.rewards: GRPO rewards read completions the way evaluation does, per row's own task."""
import pytest

from lancy.rewards import REWARDS, label_reward, math_reward, task_reward


@pytest.mark.parametrize(
    ("completion", "answer", "source", "reward"),
    [
        (" positive", "positive", "imdb", 1.0),
        (" Positive.", "positive", "sst2", 1.0),
        (" positive\nReview: more text", "positive", "imdb", 1.0),
        (" negative", "positive", "imdb", 0.0),
        (" great", "positive", "imdb", 0.0),  # not a label word: invalid, never rewarded
        ("", "positive", "imdb", 0.0),
        (" not_equivalent", "not_equivalent", "mrpc", 1.0),
        (" equivalent", "not_equivalent", "mrpc", 0.0),
        (" not_equivalent", "equivalent", "mrpc", 0.0),
        (" positive", "positive", "mrpc", 0.0),  # a word of another dataset's labels
    ],
)
def test_label_reward(completion, answer, source, reward):
    assert label_reward(completion, answer, source) == reward


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
    ],
)
def test_math_reward(completion, answer, reward):
    assert math_reward(completion, answer, "gsm8k") == reward


def test_rewards_are_floats():
    assert type(label_reward(" positive", "positive", "imdb")) is float
    assert type(math_reward("#### 1", "2", "gsm8k")) is float


def test_registry_covers_the_task_kinds():
    assert REWARDS == {"classification": label_reward, "math": math_reward}


def test_task_reward_mixed_tasks_in_one_call():
    rows = [
        # (completion, answer, task, source, reward)
        (" positive", "positive", "classification", "imdb", 1.0),
        ("#### 72", "72", "math", "gsm8k", 1.0),
        (" negative", "positive", "classification", "sst2", 0.0),
        ("#### 71", "72", "math", "gsm8k", 0.0),
        (" equivalent", "equivalent", "classification", "mrpc", 1.0),
        (" 72", "negative", "classification", "imdb", 0.0),
        (" positive", "5", "math", "gsm8k", 0.0),
    ]
    completions, answers, tasks, sources, expected = (list(column) for column in zip(*rows, strict=True))
    prompts = [f"prompt {i}" for i in range(len(rows))]
    rewards = task_reward(prompts, completions, answer=answers, task=tasks, source=sources,
                          completion_ids=[[1]] * len(rows), trainer_state=None)  # TRL passes extra kwargs
    assert rewards == expected


def test_task_reward_rejects_misaligned_columns():
    with pytest.raises(ValueError):
        task_reward(["p", "q"], [" positive", " negative"], answer=["positive"], task=["classification"] * 2,
                    source=["imdb"] * 2)
