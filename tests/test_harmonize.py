"""lancy.harmonize on the original five datasets: each raw row becomes one exact record, or is dropped.

Every other catalog entry is covered family by family in tests/test_catalog.py.
"""
import pytest

from lancy.catalog import CATALOG, TASKS
from lancy.errors import LancyError
from lancy.harmonize import check_columns, harmonize_rows, to_record, to_text
from lancy.prompts import TEMPLATES

GSM8K_QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. " \
                 "How many clips did Natalia sell altogether in April and May?"
GSM8K_WORKED = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n" \
               "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"

# One hand-written row per original dataset, in the real (Hub) column layout.
ROWS = {
    "imdb": {"text": "A slow start, but the last hour is wonderful.", "label": 1},
    "sst2": {"sentence": "a dull , lifeless remake ", "label": 0, "idx": 17},
    "mrpc": {
        "sentence1": "The company said profits rose 5 percent.",
        "sentence2": "Profits were down, the firm reported.",
        "label": 0,
        "idx": 3,
    },
    "gsm8k": {"question": GSM8K_QUESTION, "answer": GSM8K_WORKED},
    "wikitext": {"text": " = Valkyria Chronicles III = \n"},
}

EXPECTED_RECORDS = {
    "imdb": {
        "source": "imdb",
        "task": "classification",
        "prompt": "Classify the sentiment of this movie review as either 'positive' or 'negative'.\n\n"
                  "Review: A slow start, but the last hour is wonderful.\nSentiment:",
        "completion": " positive",
        "answer": "positive",
        "labels": ["negative", "positive"],
        "tests": "",
    },
    "sst2": {
        "source": "sst2",
        "task": "classification",
        "prompt": "Classify the sentiment of this sentence as either 'positive' or 'negative'.\n\n"
                  "Sentence: a dull , lifeless remake \nSentiment:",
        "completion": " negative",
        "answer": "negative",
        "labels": ["negative", "positive"],
        "tests": "",
    },
    "mrpc": {
        "source": "mrpc",
        "task": "classification",
        "prompt": "Determine if these two sentences are equivalent or not_equivalent in meaning.\n\n"
                  "Sentence 1: The company said profits rose 5 percent.\n"
                  "Sentence 2: Profits were down, the firm reported.\nRelation:",
        "completion": " not_equivalent",
        "answer": "not_equivalent",
        "labels": ["not_equivalent", "equivalent"],
        "tests": "",
    },
    "gsm8k": {
        "source": "gsm8k",
        "task": "math",
        "prompt": "Solve this math problem step by step. Give the final number after '####'.\n\n"
                  f"Question: {GSM8K_QUESTION}\nAnswer:",
        "completion": " " + GSM8K_WORKED,
        "answer": "72",
        "labels": [],
        "tests": "",
    },
}

EXPECTED_TEXTS = {
    "imdb": "A slow start, but the last hour is wonderful.",
    "sst2": "a dull , lifeless remake",
    "mrpc": "The company said profits rose 5 percent.\nProfits were down, the firm reported.",
    "gsm8k": GSM8K_QUESTION + "\n" + GSM8K_WORKED,
    "wikitext": "= Valkyria Chronicles III =",
}

NAMES = list(ROWS)
TASK_DATASETS = [name for name in NAMES if CATALOG[name].task != "corpus"]


def test_every_original_dataset_has_a_test_row():
    assert set(ROWS) == set(EXPECTED_TEXTS) == {"imdb", "sst2", "mrpc", "gsm8k", "wikitext"}
    assert set(EXPECTED_RECORDS) == set(TASK_DATASETS)
    assert set(ROWS) <= set(CATALOG)


@pytest.mark.parametrize("name", NAMES)
def test_catalog_entry_is_consistent(name):
    spec = CATALOG[name]
    assert spec.name == name
    assert spec.task in TASKS
    assert list(ROWS[name]) == list(spec.columns)  # these datasets have no columns beyond the entry's
    assert set(spec.text_columns) <= set(spec.columns)
    if spec.task == "classification":
        assert len(spec.labels) >= 2 and spec.label_column in spec.columns
    if spec.task == "math":
        assert spec.target in spec.columns and spec.answer_after == "####"
    if spec.task == "corpus":
        assert spec.prompt is None
    else:
        assert spec.prompt in TEMPLATES


@pytest.mark.parametrize("name", TASK_DATASETS)
def test_to_record_exact(name):
    record, reason = to_record(CATALOG[name], ROWS[name])
    assert reason is None
    assert record == EXPECTED_RECORDS[name]


def test_prompts_end_right_before_the_answer():
    """The prompt ends with the cue, so what follows (the completion) is exactly the label or worked answer."""
    cues = {"imdb": "\nSentiment:", "sst2": "\nSentiment:", "mrpc": "\nRelation:", "gsm8k": "\nAnswer:"}
    for name, cue in cues.items():
        record, _ = to_record(CATALOG[name], ROWS[name])
        assert record["prompt"].endswith(cue)
    mrpc, _ = to_record(CATALOG["mrpc"], ROWS["mrpc"])
    assert ROWS["mrpc"]["sentence1"] in mrpc["prompt"] and ROWS["mrpc"]["sentence2"] in mrpc["prompt"]


@pytest.mark.parametrize("name", ["imdb", "sst2", "mrpc"])
def test_every_label_index_maps_to_its_word(name):
    spec = CATALOG[name]
    for index, word in enumerate(spec.labels):
        record, reason = to_record(spec, {**ROWS[name], "label": index})
        assert reason is None
        assert record["answer"] == word
        assert record["completion"] == " " + word
        assert record["labels"] == list(spec.labels)


def test_mrpc_label_words():
    record, _ = to_record(CATALOG["mrpc"], {**ROWS["mrpc"], "label": 1})
    assert (record["completion"], record["answer"]) == (" equivalent", "equivalent")


def test_gsm8k_answer_with_thousands_separator():
    row = {"question": "How many?", "answer": "Add them: 1,000 + 234 = 1,234\n#### 1,234"}
    record, reason = to_record(CATALOG["gsm8k"], row)
    assert reason is None
    assert record["answer"] == "1234"
    assert record["completion"] == " Add them: 1,000 + 234 = 1,234\n#### 1,234"
    assert record["labels"] == []


@pytest.mark.parametrize("name", NAMES)
def test_to_text_exact(name):
    assert to_text(CATALOG[name], ROWS[name]) == EXPECTED_TEXTS[name]


def test_blank_wikitext_line_has_no_text():
    assert to_text(CATALOG["wikitext"], {"text": "  \n"}) is None
    assert to_text(CATALOG["wikitext"], {"text": ""}) is None


def test_corpus_dataset_has_no_task_record():
    with pytest.raises(ValueError):
        to_record(CATALOG["wikitext"], ROWS["wikitext"])


DROPPED = [
    ("imdb", {"text": "", "label": 1}, "empty_text"),
    ("imdb", {"text": "   \n", "label": 1}, "empty_text"),
    ("sst2", {"sentence": None, "label": 1, "idx": 0}, "empty_text"),
    ("mrpc", {**ROWS["mrpc"], "sentence2": " "}, "empty_text"),
    ("gsm8k", {"question": "", "answer": GSM8K_WORKED}, "empty_text"),
    ("imdb", {"text": "Fine.", "label": -1}, "bad_label"),  # GLUE test splits use -1 for "no label"
    ("imdb", {"text": "Fine.", "label": 5}, "bad_label"),
    ("sst2", {"sentence": "fine", "label": 2, "idx": 0}, "bad_label"),
    ("mrpc", {**ROWS["mrpc"], "label": -1}, "bad_label"),
    ("imdb", {"text": "Fine.", "label": "1"}, "bad_label"),
    ("imdb", {"text": "Fine.", "label": True}, "bad_label"),
    ("gsm8k", {"question": "How many?", "answer": "She has 72 clips."}, "unparseable_answer"),
    ("gsm8k", {"question": "How many?", "answer": "She has some clips.\n#### many"}, "unparseable_answer"),
]


@pytest.mark.parametrize(("name", "row", "reason"), DROPPED)
def test_dropped_rows_give_a_reason(name, row, reason):
    assert to_record(CATALOG[name], row) == (None, reason)


@pytest.mark.parametrize("name", NAMES)
def test_missing_column_names_dataset_and_column(name):
    spec = CATALOG[name]
    for column in spec.columns:
        row = {k: v for k, v in ROWS[name].items() if k != column}
        with pytest.raises(LancyError) as caught:
            check_columns(spec, row, "train split")
        message = str(caught.value)
        assert f"dataset {name}" in message
        assert f"`{column}`" in message
        assert "train split" in message
    check_columns(spec, ROWS[name], "train split")  # a complete row passes


def test_harmonize_rows_counts_drops_and_keeps_texts():
    spec = CATALOG["imdb"]
    rows = [ROWS["imdb"], {"text": "Awful.", "label": 0}, {"text": "", "label": 1}, {"text": "Meh.", "label": 7}]
    dropped = {}
    records, texts = harmonize_rows(spec, rows, "train", dropped)
    assert [r["answer"] for r in records] == ["positive", "negative"]
    assert dropped == {"train/empty_text": 1, "train/bad_label": 1}
    # A row with a bad label still has usable pretraining text; an empty one does not.
    assert texts == [EXPECTED_TEXTS["imdb"], "Awful.", "Meh."]


def test_harmonize_rows_corpus_gives_texts_only():
    dropped = {}
    records, texts = harmonize_rows(CATALOG["wikitext"], [ROWS["wikitext"], {"text": " \n"}], "test", dropped)
    assert records == [] and dropped == {}
    assert texts == [EXPECTED_TEXTS["wikitext"]]


def test_harmonize_rows_raises_on_missing_column():
    with pytest.raises(LancyError, match="dataset sst2 .*`idx`"):
        harmonize_rows(CATALOG["sst2"], [{"sentence": "ok", "label": 1}], "test", {})


def test_harmonize_rows_uses_a_prompt_override():
    dropped = {}
    records, _ = harmonize_rows(CATALOG["sst2"], [ROWS["sst2"]], "train", dropped, "Text: {sentence}\nLabel:")
    assert records == [{**EXPECTED_RECORDS["sst2"], "prompt": "Text: a dull , lifeless remake \nLabel:"}]


def test_harmonize_rows_override_with_unknown_field_is_a_user_error():
    with pytest.raises(LancyError, match=r"`prompts\.sst2`"):
        harmonize_rows(CATALOG["sst2"], [ROWS["sst2"]], "train", {}, "Review: {text}\nLabel:")


def test_records_are_json_serializable_with_list_labels():
    import json

    for name in TASK_DATASETS:
        record, _ = to_record(CATALOG[name], ROWS[name])
        assert isinstance(record["labels"], list)
        assert json.loads(json.dumps(record)) == record


BCB_TESTS = ("import unittest\n\nclass TestCases(unittest.TestCase):\n"
             "    def test_one(self):\n        self.assertEqual(task_func(), 1)\n")
BCB_ROW = {"task_id": "BigCodeBench/1", "complete_prompt": "", "instruct_prompt": "Return one.",
           "canonical_solution": "    return 1\n", "code_prompt": "def task_func():\n", "test": BCB_TESTS,
           "entry_point": "task_func", "doc_struct": "{}", "libs": "[]"}


def test_code_records_carry_their_unit_tests():
    """BigCodeBench's `test` column becomes the record's `tests`: the code reward and pass@1 run it."""
    record, reason = to_record(CATALOG["bigcodebench"], BCB_ROW)
    assert reason is None
    assert record["tests"] == BCB_TESTS
    assert record["completion"] == "\ndef task_func():\n    return 1"  # the whole solution: what the tests import
    with pytest.raises(LancyError, match="`test`"):
        harmonize_rows(CATALOG["bigcodebench"], [{k: v for k, v in BCB_ROW.items() if k != "test"}], "train", {})


def test_every_record_has_the_same_keys():
    """A GRPO dataset takes its columns from its first row: a code row's `tests` must not vanish behind another."""
    records = [to_record(CATALOG[name], ROWS[name])[0] for name in TASK_DATASETS]
    records.append(to_record(CATALOG["bigcodebench"], BCB_ROW)[0])
    assert {tuple(sorted(r)) for r in records} == {("answer", "completion", "labels", "prompt", "source", "task",
                                                    "tests")}
