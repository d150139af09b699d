"""The embedded synthetic stand-ins: schemas, determinism, learnable labels, correct arithmetic, variety."""
import json
import re
from types import SimpleNamespace

import pytest

from lancy.catalog import CATALOG
from lancy.embedded import EMBEDDED_DATASETS, NEGATIVE_TERMS, POSITIVE_TERMS, generate
from lancy.mixing import held_out_keys, remove_held_out
from lancy.sources import fetch, write_raw
from lancy.tables import read_table

N = 2000
SCHEMAS = {
    "imdb": {"text": str, "label": int},
    "sst2": {"sentence": str, "label": int, "idx": int},
    "mrpc": {"sentence1": str, "sentence2": str, "label": int, "idx": int},
    "fpb_allagree": {"sentence": str, "label": int},
    "gsm8k": {"question": str, "answer": str},
    "wikitext": {"text": str},
}


def _pattern(terms):
    alternatives = "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True))
    return re.compile(r"(?<![\w-])(" + alternatives + r")(?![\w-])")


POSITIVE = _pattern(POSITIVE_TERMS)
NEGATIVE = _pattern(NEGATIVE_TERMS)


@pytest.fixture(scope="module")
def train():
    return {name: generate(name, "train", N, 0) for name in EMBEDDED_DATASETS}


def test_names():
    assert EMBEDDED_DATASETS == ("imdb", "sst2", "mrpc", "fpb_allagree", "gsm8k", "wikitext")
    assert set(SCHEMAS) == set(EMBEDDED_DATASETS)


@pytest.mark.parametrize("name", EMBEDDED_DATASETS)
def test_schema(name, train):
    rows = train[name]
    assert len(rows) == N
    for row in rows:
        assert list(row) == list(SCHEMAS[name])  # exact columns, exact order
        for column, kind in SCHEMAS[name].items():
            assert type(row[column]) is kind
        if "label" in row:
            assert row["label"] in range(len(CATALOG[name].labels))
    if "idx" in SCHEMAS[name]:
        assert [row["idx"] for row in rows] == list(range(N))


@pytest.mark.parametrize("name", EMBEDDED_DATASETS)
def test_deterministic_and_splits_differ(name):
    first = generate(name, "train", 300, 7)
    assert json.dumps(first) == json.dumps(generate(name, "train", 300, 7))
    assert generate(name, "train", 300, 8) != first
    test = generate(name, "test", 300, 7)
    text_columns = [c for c, kind in SCHEMAS[name].items() if kind is str]

    def texts(rows):  # wikitext blanks and section headings repeat by design: compare the other rows
        return {tuple(row[c] for c in text_columns) for row in rows
                if row[text_columns[0]].strip()[:1] not in ("", "=")}

    assert texts(test) and not texts(first) & texts(test)


@pytest.mark.parametrize("name", EMBEDDED_DATASETS)
def test_train_holds_no_held_out_row(name, train):
    """Train and test are disjoint as the mix stage matches held-out text (some SST-2 test sentences were
    once repeated verbatim in train)."""
    spec = CATALOG[name]
    _, removed = remove_held_out(spec, train[name], held_out_keys(spec, generate(name, "test", 200, 0)))
    assert removed == []


@pytest.mark.parametrize("name", EMBEDDED_DATASETS)
def test_raw_tables_keep_every_value_type_and_column_order(name, tmp_path):
    """What the download stage writes (fetch, then Parquet shards in data/raw) reads back as generated."""
    data = SimpleNamespace(source="embedded", train_rows=300, test_rows=20, dataset_test_rows={})
    write_raw(fetch(CATALOG[name], data, seed=5), tmp_path)
    for split, n_rows in (("train", 300), ("test", 20)):
        rows = read_table(tmp_path / split).to_list()
        assert json.dumps(rows) == json.dumps(generate(name, split, n_rows, 5))


@pytest.mark.parametrize("n_rows", [0, 1, 5, 37])
def test_row_count(n_rows):
    for name in EMBEDDED_DATASETS:
        assert len(generate(name, "test", n_rows, 3)) == n_rows


def test_unknown_name_or_split():
    with pytest.raises(ValueError):
        generate("squad", "train", 10, 0)
    with pytest.raises(ValueError):
        generate("imdb", "validation", 10, 0)


def test_sentiment_lists_are_rich_and_disjoint():
    assert len(POSITIVE_TERMS) >= 60 and len(NEGATIVE_TERMS) >= 60
    assert not set(POSITIVE_TERMS) & set(NEGATIVE_TERMS)


@pytest.mark.parametrize("name,column,minimum", [("imdb", "text", 2), ("sst2", "sentence", 1)])
def test_sentiment_decides_label(name, column, minimum, train):
    rows = train[name]
    assert 0.4 < sum(row["label"] for row in rows) / len(rows) < 0.6
    used = set()
    for row in rows:
        text = row[column].lower()
        good, bad = POSITIVE.findall(text), NEGATIVE.findall(text)
        same, other = (good, bad) if row["label"] == 1 else (bad, good)
        assert len(same) >= minimum, row
        assert not other, row
        used.update(same)
    assert len(used) >= 100  # many different sentiment expressions, not one keyword


def test_imdb_style(train):
    rows = train["imdb"]
    lengths = [len(row["text"].split()) for row in rows]
    assert min(lengths) >= 60 and max(lengths) <= 200
    assert any("<br /><br />" in row["text"] for row in rows)


def test_sst2_style(train):
    for row in train["sst2"]:
        sentence = row["sentence"]
        assert sentence == sentence.lower() and sentence.endswith(" ")
        assert 5 <= len(sentence.split()) <= 25
        assert not re.search(r"\w[,.;:!?]", sentence)  # punctuation is spaced out


def test_mrpc_pairs(train):
    rows = train["mrpc"]
    assert {row["label"] for row in rows} == {0, 1}
    assert 0.4 < sum(row["label"] for row in rows) / len(rows) < 0.6
    for row in rows:
        assert row["sentence1"] != row["sentence2"]
        numbers1 = sorted(re.findall(r"\d+", row["sentence1"]))
        numbers2 = sorted(re.findall(r"\d+", row["sentence2"]))
        assert numbers1, row
        if row["label"] == 1:
            assert numbers1 == numbers2, row
            # same entities: every capitalised word of sentence1 (after its first word) is in sentence2
            names1 = set(re.findall(r"[A-Z]\w+", row["sentence1"].split(" ", 1)[1]))
            assert names1 <= set(re.findall(r"\w+", row["sentence2"])), row


FPB_CUES = (  # what each label's sentences report
    re.compile(r"\b(fell|decreased|cut|loss widened|profit warning|dropped|lost|declined|laid off)\b"),
    re.compile(r"\b(headquartered|employees in|interim report|is the|delivery of|supplier of|listed|operations in"
               r"|annual general meeting)\b"),
    re.compile(r"\b(rose|increased|won|hire|grew|raised its outlook|climbed|signed|improved)\b"),
)


def test_fpb_sentences_report_what_their_label_says(train):
    rows = train["fpb_allagree"]
    for label in range(3):  # about a third each
        assert 0.28 < sum(row["label"] == label for row in rows) / len(rows) < 0.39
    for row in rows:
        sentence = row["sentence"]
        assert sentence.endswith(" .") and not re.search(r"\w[,.%](\s|$)", sentence)  # spaced punctuation
        cues = [bool(cue.search(sentence)) for cue in FPB_CUES]
        assert cues[row["label"]] and sum(cues) == 1, row
        # neither of the sentiment stand-ins' words: the label words are the only thing SFT on them transfers
        assert not POSITIVE.search(sentence.lower()) and not NEGATIVE.search(sentence.lower()), row
        numbers = re.findall(r"EUR (\d+\.\d) mn", sentence)
        if " to EUR " in sentence and " from EUR " in sentence:  # "rose to a from b": a > b; "fell to": a < b
            to, source = (float(n) for n in numbers[:2])
            assert (to > source) == (row["label"] == 2 or "loss" in sentence), row
    assert len({row["sentence"] for row in rows}) > 0.95 * N


ANNOTATION = re.compile(r"<<([^=<>]+)=(-?\d+)>>(-?\d+)")


def test_gsm8k_arithmetic(train):
    for row in train["gsm8k"]:
        assert row["question"].endswith("?")
        lines = row["answer"].split("\n")
        assert re.fullmatch(r"#### -?\d+", lines[-1]), row
        annotations = ANNOTATION.findall(row["answer"])
        assert 1 <= len(annotations) <= 3 and len(lines) == len(annotations) + 1
        for expr, value, shown in annotations:
            assert re.fullmatch(r"[\d+\-*/() ]+", expr)
            result = eval(expr)  # digits and operators only, checked above
            assert result == int(value) == int(shown), (expr, value)
        assert int(lines[-1][5:]) == int(annotations[-1][1])


def test_gsm8k_variety(train):
    questions = {row["question"] for row in train["gsm8k"]}
    assert len(questions) > 0.95 * N
    openings = {" ".join(q.split()[1:3]) for q in questions}
    assert len(openings) >= 10


def test_wikitext_lines(train):
    kinds = {"blank": 0, "title": 0, "section": 0, "paragraph": 0}
    for row in train["wikitext"]:
        text = row["text"]
        if text == "":
            kinds["blank"] += 1
        elif re.fullmatch(r" = [^=]+ = \n", text):
            kinds["title"] += 1
        elif re.fullmatch(r" (= )+[^=]+ (= )+\n", text):
            kinds["section"] += 1
        else:
            assert text.startswith(" ") and text.endswith(" \n"), text
            assert not re.search(r"\w[,.]( |$)", text), text  # ' , ' and ' . '
            kinds["paragraph"] += 1
    assert all(kinds.values()), kinds
    assert kinds["paragraph"] > kinds["section"] + kinds["title"]


def test_byte_level_bpe_fills_4096(train):
    tokenizers = pytest.importorskip("tokenizers")
    texts = [" ".join(v for v in row.values() if isinstance(v, str)) for rows in train.values() for row in rows]
    tokenizer = tokenizers.ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(texts, vocab_size=4096, min_frequency=2, show_progress=False)
    assert tokenizer.get_vocab_size() >= 4096
