"""The dataset catalog: one entry per dataset lancy knows, in one place.

An entry says where the dataset lives on the Hub, which columns its rows have, what task it is, its
label words (index = the dataset's integer label), the prompt template, and which columns are plain text
for the pretraining corpus. Adding a dataset is adding an entry here (and a test in tests/test_catalog.py).
"""
from dataclasses import dataclass

TASKS = ("classification", "math", "corpus")


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # the short name used in params.yaml (mixture, corpus) and in data/ paths
    hub_id: str
    config: str | None
    train_split: str  # Hub split used for training rows
    test_split: str  # Hub split used for held-out rows (GLUE test splits have no labels: use validation)
    columns: tuple[str, ...]  # raw columns every row must have
    task: str  # one of TASKS
    text_columns: tuple[str, ...]  # columns joined into pretraining text
    labels: tuple[str, ...] = ()  # classification: label word of each integer label
    prompt: str | None = None  # a template name in lancy.prompts.TEMPLATES
    answer_column: str | None = None  # math: column holding the worked answer ending in '#### <number>'


CATALOG: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="imdb",
            hub_id="stanfordnlp/imdb",
            config=None,
            train_split="train",
            test_split="test",
            columns=("text", "label"),
            task="classification",
            text_columns=("text",),
            labels=("negative", "positive"),
            prompt="imdb",
        ),
        DatasetSpec(
            name="sst2",
            hub_id="nyu-mll/glue",
            config="sst2",
            train_split="train",
            test_split="validation",
            columns=("sentence", "label", "idx"),
            task="classification",
            text_columns=("sentence",),
            labels=("negative", "positive"),
            prompt="sst2",
        ),
        DatasetSpec(
            name="mrpc",
            hub_id="nyu-mll/glue",
            config="mrpc",
            train_split="train",
            test_split="validation",
            columns=("sentence1", "sentence2", "label", "idx"),
            task="classification",
            text_columns=("sentence1", "sentence2"),
            labels=("not_equivalent", "equivalent"),
            prompt="mrpc",
        ),
        DatasetSpec(
            name="gsm8k",
            hub_id="openai/gsm8k",
            config="main",
            train_split="train",
            test_split="test",
            columns=("question", "answer"),
            task="math",
            text_columns=("question", "answer"),
            prompt="gsm8k",
            answer_column="answer",
        ),
        DatasetSpec(
            name="wikitext",
            hub_id="Salesforce/wikitext",
            config="wikitext-2-raw-v1",
            train_split="train",
            test_split="test",
            columns=("text",),
            task="corpus",
            text_columns=("text",),
        ),
    )
}
