"""lancy.prompts templates and lancy.answers parsing: how prompts are written and how answers are read back."""
import pytest

from lancy.answers import final_number, normalize_number, parse_label
from lancy.catalog import CATALOG
from lancy.prompts import TEMPLATES, render

SENTIMENT = CATALOG["imdb"].labels
RELATION = CATALOG["mrpc"].labels


def test_templates_cover_every_task_dataset():
    assert set(TEMPLATES) == {name for name, spec in CATALOG.items() if spec.task != "corpus"}


def test_render_named_template():
    prompt = render("sst2", {"sentence": "a gem", "label": 1, "idx": 0})
    assert prompt == (
        "Classify the sentiment of this sentence as either 'positive' or 'negative'.\n\nSentence: a gem\nSentiment:"
    )


def test_render_literal_template_and_braces_in_values():
    assert render("Q: {question}", {"question": "what is {x}?"}) == "Q: what is {x}?"


def test_render_missing_column_raises():
    with pytest.raises(KeyError):
        render("mrpc", {"sentence1": "only one"})


@pytest.mark.parametrize("text", [" positive", "Positive.", "positive\nmore", "POSITIVE!", "  positive, I think"])
def test_parse_label_positive(text):
    assert parse_label(text, SENTIMENT) == "positive"


def test_parse_label_negative():
    assert parse_label(" negative", SENTIMENT) == "negative"


def test_parse_label_distinguishes_not_equivalent():
    assert parse_label(" not_equivalent", RELATION) == "not_equivalent"
    assert parse_label(" equivalent", RELATION) == "equivalent"
    assert parse_label("Not_Equivalent.", RELATION) == "not_equivalent"


@pytest.mark.parametrize("text", ["pos", "", "   ", "the movie is positive", "positively", "not equivalent"])
def test_parse_label_invalid(text):
    labels = RELATION if "equivalent" in text else SENTIMENT
    assert parse_label(text, labels) is None


def test_parse_label_only_accepts_the_datasets_labels():
    assert parse_label(" equivalent", SENTIMENT) is None
    assert parse_label(" positive", RELATION) is None


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("#### 1,234", "1234"),
        ("#### 7.50", "7.5"),
        ("#### 72", "72"),
        ("####72", "72"),
        ("5 + 3 = 8\n#### 8", "8"),  # the number after '####', not the last one before it
        ("#### 8\nQuestion: 99 apples", "8"),  # text generated after the answer is ignored
        ("#### -3", "-3"),
        ("#### 12.0", "12"),
        ("the answer is 12 and then 13", "13"),
        ("It costs $18", "18"),
        ("$18", "18"),
        ("She has 1,000,000 coins.", "1000000"),
        ("no number", None),
        ("", None),
        ("#### none", None),
    ],
)
def test_final_number(text, number):
    assert final_number(text) == number


def test_normalize_number():
    assert normalize_number("1,234.50") == "1234.5"
    assert normalize_number("$7") == "7"
    assert normalize_number("0.25") == "0.25"
    assert normalize_number("nothing") is None
