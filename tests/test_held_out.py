"""No held-out text in training, across the datasets of a run: matching (lancy.mixing), the mix stage's
removal and counts, and the pretraining validation slice that is disjoint from the evaluated rows."""
import json

import pytest
import yaml
from datasets import Dataset

import lancy.tables
from lancy.catalog import CATALOG
from lancy.mixing import (
    held_out_keys,
    held_out_mask,
    match_keys,
    remove_held_out,
    split_validation,
    text_key,
    text_keys,
)
from lancy.tables import read_table, write_table


def test_text_key_ignores_case_and_whitespace():
    assert text_key("Sales  fell 5% .\n") == text_key("sales fell 5% .") != text_key("sales fell 6% .")


def test_mask_matches_whole_texts_and_whole_lines():
    keys = text_keys(["Operating profit rose to EUR 13.1 mn ."])
    texts = [
        "operating profit  rose to eur 13.1 mn .",
        "Sales fell 5% .\nAnswer: negative\n\nOperating profit rose to EUR 13.1 mn .\nAnswer:",  # a few-shot prompt
        "Operating profit rose to EUR 13.1 mn . Net sales fell .",  # part of a line: not matched
        None,
    ]
    assert held_out_mask(texts, keys) == [True, True, False, False]


def test_short_corpus_lines_identify_nothing_but_short_task_inputs_do():
    heading, paragraph = " = = Early life = = \n", " Smith was born in Leeds in 1901 . \n"
    keys = held_out_keys(CATALOG["wikitext"], [{"text": heading}, {"text": paragraph}])
    assert held_out_mask([heading, paragraph], keys) == [False, True]  # headings recur in every article
    keys = held_out_keys(CATALOG["sst2"], [{"sentence": "a dud . ", "label": 0, "idx": 0}])
    assert held_out_mask(["A dud ."], keys) == [True]


# --- across datasets ---------------------------------------------------------------------------------------------


def _fpb(i: int) -> dict:
    return {"sentence": f"Company {i:04d} reported {('lower', 'flat', 'higher')[i % 3]} sales in the quarter .",
            "label": i % 3}


def _gsm(i: int, socratic: bool = False) -> dict:
    step = f"How many does she have? She has {i}+2 = <<{i}+2={i + 2}>>{i + 2}." if socratic else \
        f"She has {i}+2 = <<{i}+2={i + 2}>>{i + 2}."
    return {"question": f"Ana {i:04d} has {i} pens and buys 2 more. How many pens does she have?",
            "answer": f"{step}\n#### {i + 2}"}


def _removed(name: str, train: list[dict], held_out: set[bytes]) -> list[dict]:
    return remove_held_out(CATALOG[name], train, held_out)[1]


def test_nested_phrasebank_configs_never_train_on_each_others_held_out_rows():
    allagree = [_fpb(i) for i in range(0, 120, 2)]  # the all-agree sentences are a subset of the 50%-agree ones
    fifty = [{**_fpb(i), "sentence": _fpb(i)["sentence"].upper()} for i in range(120)]  # case does not hide a row
    held_out = held_out_keys(CATALOG["fpb_allagree"], allagree[:10])
    held_out |= held_out_keys(CATALOG["fpb_50agree"], fifty[100:])
    assert _removed("fpb_50agree", fifty[:100], held_out) == fifty[0:20:2]  # allagree's held-out rows
    assert _removed("fpb_allagree", allagree[10:], held_out) == allagree[50:]  # 50agree's held-out rows


def test_gsm8k_socratic_loses_the_rows_whose_question_is_a_gsm8k_test_question():
    gsm8k_test = [_gsm(i) for i in range(10)]
    socratic_train = [_gsm(i, socratic=True) for i in range(40)]  # same questions, other worked answers
    removed = _removed("gsm8k_socratic", socratic_train, held_out_keys(CATALOG["gsm8k"], gsm8k_test))
    assert removed == socratic_train[:10]


def test_mmlu_subject_rows_are_matched_with_their_options():
    test = [{"question": "Which of these is true?", "choices": ["femur", "tibia", "ulna", "radius"], "answer": 0}]
    held_out = held_out_keys(CATALOG["mmlu_anatomy"], test)
    train = [{**test[0], "answer": 1}, {**test[0], "choices": ["skull", "tibia", "ulna", "radius"]}]
    assert _removed("mmlu", train, held_out) == train[:1]  # a generic question with other options: another row


def test_a_few_shot_prompt_quoting_a_held_out_sentence_is_removed():
    held_out = held_out_keys(CATALOG["fpb_allagree"], [_fpb(4)])
    prompt = f"{_fpb(2)['sentence']}\nAnswer: positive\n\n{_fpb(4)['sentence']}\nAnswer:"
    train = [{"input": prompt, "options": ["negative", "neutral", "positive"], "gold_index": 1},
             {"input": f"{_fpb(2)['sentence']}\nAnswer:", "options": ["negative", "positive"], "gold_index": 0}]
    assert _removed("adapt_fpb", train, held_out) == train[:1]


def _pool(texts: list[str]) -> Dataset:
    """A corpus pool as the mix stage builds it: text, size and the hashes it is matched by."""
    return Dataset.from_dict({"text": texts, "text_chars": [len(text) for text in texts],
                              "keys": [match_keys(text) for text in texts]})


def test_validation_slice_leaves_no_copy_in_the_pools():
    pools = {"a": _pool([f"document {i:03d} of source a with some words" for i in range(50)] * 2),
             "b": _pool([f"document {i:03d} of source b with some words" for i in range(50)])}

    def split() -> tuple[dict, list, dict, dict]:
        picks, order, stats, rest = split_validation(pools, {"a": 0.5, "b": 0.5}, 400, seed=0)
        val = {name: pools[name].select(idx)["text"][:] for name, idx in picks.items()}
        assert len(order) == sum(map(len, val.values()))
        return val, order.tolist(), stats, {name: pool["text"][:] for name, pool in rest.items()}

    first = split()
    val, _, stats, rest = first
    val_texts = {text for texts in val.values() for text in texts}
    assert val_texts and stats["a"]["docs"] == len(val["a"]) and stats["b"]["docs"] == len(val["b"])
    assert not val_texts & {t for texts in rest.values() for t in texts}  # duplicates of a val text go too
    assert sum(map(len, rest.values())) == 150 - sum(2 if " a " in text else 1 for text in val_texts)
    assert split() == first


# --- the mix stage -----------------------------------------------------------------------------------------------

WIKI_TEST = [" = = Early life = = \n", " Smith was born in Leeds in 1901 and trained as a baker . \n"]


def _wiki(i: int) -> dict:
    return {"text": f" Paragraph {i:04d} : the town of Leeds grew around a mill and a quiet harbour . \n"}


RAW = {  # dataset: (train rows, test rows); the nested and sibling datasets share rows on purpose
    "fpb_allagree": ([_fpb(i) for i in range(20, 120, 2)], [_fpb(i) for i in range(0, 20, 2)]),
    "fpb_50agree": ([_fpb(i) for i in range(100)], [_fpb(i) for i in range(100, 120)]),
    "gsm8k": ([_gsm(i) for i in range(10, 60)], [_gsm(i) for i in range(10)]),
    "gsm8k_socratic": ([_gsm(i, True) for i in range(50)], [_gsm(i, True) for i in range(50, 60)]),
    # wikitext train: its own heading (kept), a held-out paragraph, an fpb held-out sentence (both removed)
    "wikitext": ([_wiki(i) for i in range(60)] + [{"text": WIKI_TEST[0]}, {"text": WIKI_TEST[1]},
                                                  {"text": _fpb(104)["sentence"]}], [{"text": t} for t in WIKI_TEST]),
}


def _mix_repo(root, **params) -> None:
    """params.yaml and the raw tables of RAW in `root`, as the download stage leaves them."""
    params = {"seed": 0, "mixture": {name: 0.0 if name == "wikitext" else 0.25 for name in RAW},
              "corpus": {"wikitext": 0.5, "gsm8k_socratic": 0.25, "fpb_50agree": 0.25},
              "mix": {"sft_rows": 80, "rl_rows": 8, "corpus_chars": 6000}, **params}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for name, (train, test) in RAW.items():
        write_table(Dataset.from_list(train), root / "data/raw" / name / "train")
        write_table(Dataset.from_list(test), root / "data/raw" / name / "test")


def _run_mix(root) -> dict[str, bytes]:
    """The mix stage run in `root` (the working directory): every file it writes, with its bytes."""
    from stages import mix

    mix.main()
    files = sorted((root / "data/mixed").rglob("*")) + [root / "metrics/mix.json"]
    return {str(path.relative_to(root)): path.read_bytes() for path in files if path.is_file()}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("held_out")
    _mix_repo(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        first = _run_mix(root)
        second = _run_mix(root)
    return root, first, second


def test_mix_removes_and_counts_held_out_rows_of_every_dataset(mixed):
    root, _, _ = mixed
    metrics = json.loads((root / "metrics/mix.json").read_text())
    removed = {name: source["held_out_removed"] for name, source in metrics["sources"].items()}
    assert removed == {
        "fpb_allagree": {"tasks": 10, "corpus": 10},  # 50agree's held-out sentences 100..118 (even)
        "fpb_50agree": {"tasks": 10, "corpus": 10},  # allagree's held-out sentences 0..18 (even)
        "gsm8k": {"tasks": 10, "corpus": 10},  # socratic's held-out questions 50..59
        "gsm8k_socratic": {"tasks": 10, "corpus": 10},  # gsm8k's held-out questions 0..9
        "wikitext": {"tasks": 0, "corpus": 2},  # the paragraph and the fpb sentence; the heading stays
    }
    assert metrics["sft_rows"] == 80 and metrics["rl_rows"] == 8  # filtered before sampling


def test_no_training_view_holds_held_out_text(mixed):
    root, _, _ = mixed
    held_out = [t for _, test in RAW.values() for row in test for t in (row.get("sentence"), row.get("question"))
                if t] + WIKI_TEST[1:]
    rows = {name: read_table(root / "data/mixed" / name).to_list() for name in ("sft", "rl", "corpus", "corpus_val")}
    training = [r["prompt"] + r["completion"] for r in rows["sft"] + rows["rl"]]
    training += [d["text"] for d in rows["corpus"] + rows["corpus_val"]]
    assert len(training) > 100
    leaks = [(h, t) for h in held_out for t in training if h.casefold() in t.casefold()]
    assert not leaks, leaks[:3]


def test_validation_slice_is_disjoint_from_corpus_and_evaluated_rows(mixed):
    root, _, _ = mixed
    val = read_table(root / "data/mixed/corpus_val").to_list()
    corpus = {d["text"] for d in read_table(root / "data/mixed/corpus").to_list()}
    evaluated = [r.get("text") or r["prompt"] for folder in (root / "data/mixed/eval").iterdir()
                 for r in read_table(folder).to_list()]
    assert len(evaluated) == sum(len(test) for _, test in RAW.values())
    assert val and {d["source"] for d in val} == {"wikitext", "gsm8k_socratic", "fpb_50agree"}
    for doc in val:
        assert doc["text"] not in corpus
        if doc["text"] != WIKI_TEST[0].strip():  # a section heading recurs in every article: not held-out text
            assert not any(doc["text"].casefold() in e.casefold() for e in evaluated), doc
    assert not (root / "data/mixed/corpus_eval").exists()  # the eval loss no longer reads held-out rows


def test_mix_outputs_are_byte_identical_when_rerun(mixed):
    _, first, second = mixed
    assert first == second and "data/mixed/corpus_val/00000.parquet" in first


def test_mix_outputs_are_byte_identical_for_one_and_two_processes(tmp_path, monkeypatch):
    from stages import mix

    monkeypatch.setattr(lancy.tables, "MIN_ROWS_PER_PROCESS", 1)  # tiny tables get worker processes too
    workers = []

    def processes(num_proc: int, rows: int) -> int | None:
        workers.append(lancy.tables.processes(num_proc, rows))
        return workers[-1]

    monkeypatch.setattr(mix, "processes", processes)
    outputs = {}
    for num_proc in (1, 2):  # a repo each: no map result cached by the other run is reused
        root = tmp_path / f"num_proc_{num_proc}"
        root.mkdir()
        _mix_repo(root, num_proc=num_proc)
        monkeypatch.chdir(root)
        workers.clear()
        outputs[num_proc] = _run_mix(root)
        assert set(workers) == ({None} if num_proc == 1 else {2})
    assert outputs[1] == outputs[2] and "data/mixed/eval/gsm8k/00000.parquet" in outputs[1]
