"""lancy.prompts templates and lancy.answers parsing: how prompts are written and how answers are read back."""
import pytest

from lancy.answers import LETTERS, final_number, math_correct, normalize_number, parse_label, syntax_valid, token_f1
from lancy.catalog import CATALOG
from lancy.prompts import TEMPLATES, render

SENTIMENT = CATALOG["imdb"].labels
RELATION = CATALOG["mrpc"].labels


def test_templates_cover_every_task_dataset():
    """Every task dataset names an existing template, and every template is used by some dataset."""
    used = {spec.prompt for spec in CATALOG.values() if spec.task != "corpus"}
    assert None not in used
    assert used == set(TEMPLATES)


def test_templates_end_right_before_the_answer():
    for name, template in TEMPLATES.items():
        if name != "passthrough":
            assert template.endswith(":") and not template.endswith(" :"), name


def test_render_multiple_choice_template():
    prompt = render("mmlu", {"question": "2 + 2 = ?", "choices_text": "A. 3\nB. 4"})
    assert prompt == (
        "Answer the multiple-choice question with the letter of the correct option.\n\n2 + 2 = ?\nA. 3\nB. 4\nAnswer:"
    )


def test_render_passthrough_is_the_input_itself():
    assert render("passthrough", {"input": "Q: a?\nAnswer:", "options": ["x"]}) == "Q: a?\nAnswer:"


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


LETTER_LABELS = list(LETTERS[:4])


@pytest.mark.parametrize(("text", "letter"), [
    (" B", "B"), ("B", "B"), ("b", "B"), ("(C)", "C"), (" (c) because", "C"), ("[D]", "D"), ("A.", "A"),
    ("A)", "A"), ("D: the last one", "D"), ("  a\nB", "A"),
])
def test_parse_label_letters(text, letter):
    assert parse_label(text, LETTER_LABELS) == letter


@pytest.mark.parametrize("text", [" E", "(E)", "AB", "Answer: B", "", "1"])
def test_parse_label_letters_invalid(text):
    assert parse_label(text, LETTER_LABELS) is None


def test_parse_label_ten_letters():
    assert LETTERS == "ABCDEFGHIJ"
    assert parse_label(" J", list(LETTERS)) == "J"
    assert parse_label(" J", list(LETTERS[:4])) is None


@pytest.mark.parametrize(("text", "answer", "correct"), [
    (" 48/2 = 24\n#### 72", "72", True),
    ("#### 1,234", "1234", True),
    ("#### 71", "72", False),
    (" -3", "-3", True),
    ("-3.0", "-3", True),
    (" 3", "-3", False),
    (" True", "True", True),
    (" True\nQuestion: Is 4 prime?\nAnswer: False", "True", True),  # the first line is the answer
    (" true", "True", False),  # exact answers are exact
    (" False", "True", False),
    (" x**2 + 1", "x**2 + 1", True),
    ("x**2 + 1 ", "x**2 + 1", True),
    (" x**2 + 2", "x**2 + 1", False),
    ("", "True", False),
    ("", "72", False),
])
def test_math_correct(text, answer, correct):
    assert math_correct(text, answer) is correct


def test_math_correct_numeric_exact_answer_ignores_text_after_it():
    assert math_correct(" -3\nQuestion: What is 2 + 2?\nAnswer: 4", "-3")
    assert not math_correct(" 5\nQuestion: Solve 2*a + 6 = 0.\nAnswer: -3", "-3")


@pytest.mark.parametrize(("text", "reference", "f1"), [
    ("the revenue grew", "The revenue grew.", 1.0),
    ("", "", 1.0),
    ("", "revenue", 0.0),
    ("revenue", "", 0.0),
    ("profit fell", "revenue grew", 0.0),
    ("revenue grew fast", "revenue grew", 0.8),  # precision 2/3, recall 1
    ("revenue", "revenue grew", 2 / 3),  # precision 1, recall 1/2
    ("grew grew grew", "revenue grew", 0.4),  # repeats count once per reference occurrence
])
def test_token_f1(text, reference, f1):
    assert token_f1(text, reference) == pytest.approx(f1)


def test_syntax_valid():
    assert syntax_valid("def f():\n    return 1")
    assert syntax_valid("")
    assert not syntax_valid("def f(:")
    assert not syntax_valid("x = \x00")  # a null byte (ValueError on some Pythons) is just invalid
    assert not syntax_valid("return 1\n  x")


def test_syntax_valid_compiles_without_running(tmp_path):
    marker = tmp_path / "ran"
    assert syntax_valid(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    assert not marker.exists()


def test_syntax_valid_on_deeply_nested_code_returns_a_bool():
    assert syntax_valid("x = " + "-" * 5000 + "1") in (True, False)
