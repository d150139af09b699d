"""The dataset catalog: one entry per dataset lancy knows, in one place.

An entry says where the dataset lives on the Hub (id, config, splits), which raw columns its rows have,
its task kind, which views it can feed, how a row becomes a task record (label words, prompt template,
target column) and which columns are plain text for pretraining. Schemas were taken from the datasets'
cards and loading scripts; `note` records what could not be confirmed and other caveats.

Adding a dataset is adding an entry here (plus a test row in tests/test_catalog.py).
"""
from collections.abc import Callable
from dataclasses import dataclass

from lancy.errors import LancyError

TASKS = ("classification", "multiple_choice", "math", "qa", "instruction", "code", "corpus")
VIEWS = ("pretrain", "sft", "rl", "eval")
TASK_VIEWS = ("sft", "rl", "eval", "pretrain")
CORPUS_VIEWS = ("pretrain", "eval")


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # the short name used in params.yaml (mixture, corpus) and in data/ paths
    hub_id: str
    config: str | None
    train_split: str
    test_split: str | None  # None: held-out rows are a seeded sample set apart from the train split
    columns: tuple[str, ...]  # raw columns every row must have
    task: str  # one of TASKS
    text_columns: tuple[str, ...]  # columns joined into pretraining text
    views: tuple[str, ...] = TASK_VIEWS
    labels: tuple[str, ...] = ()  # classification: the word of each integer label
    label_column: str = "label"
    prompt: str | None = None  # a template name in lancy.prompts.TEMPLATES
    target: str | None = None  # math/qa/instruction/code: the column holding the reference completion
    choices: str | None = None  # multiple choice: the column holding the list of options
    tests: str | None = None  # code: the column holding unit tests (unittest code) run against a completion
    answer_after: str | None = None  # math: the marker before the final number ('####'); None: exact answer
    prepare: Callable[[dict], dict] | None = None  # derives template fields (or the label) from a raw row
    revision: str | None = None  # a Hub revision, e.g. the parquet conversion of a script-based dataset
    streaming: bool = False  # huge corpora: stream and stop at the row/character budget
    note: str = ""


def check_columns(spec: DatasetSpec, row: dict, where: str) -> None:
    """Refuse, naming the column, a raw row that lacks one of the columns the entry expects."""
    missing = [column for column in spec.columns if column not in row]
    if missing:
        raise LancyError(
            f"dataset {spec.name} ({where}) has no column `{missing[0]}`; "
            f"its catalog entry expects columns: {', '.join(spec.columns)}"
        )


def filled(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def to_text(spec: DatasetSpec, row: dict) -> str | None:
    """The row's pretraining text, or None when it has none (e.g. a blank wikitext line)."""
    parts = [row[c].strip() for c in spec.text_columns if filled(row.get(c))]
    return "\n".join(parts) if parts else None


# Script-based Hub datasets do not load with datasets>=4; the Hub keeps a parquet conversion of them.
PARQUET = "refs/convert/parquet"


def _fiqa_label(row: dict) -> dict:
    """FiQA sentiment scores run from -1 to 1: below -0.1 negative, above 0.1 positive, else neutral."""
    score = row["score"]
    if not isinstance(score, (int, float)) or score != score:  # missing or NaN
        return {"label": None}
    return {"label": 0 if score < -0.1 else 2 if score > 0.1 else 1}


def _option_label(row: dict) -> dict:
    """AdaptLLM classification rows carry their own options and the index of the gold one."""
    return {"label": row["gold_index"], "labels": tuple(str(o).strip().lower() for o in row["options"])}


def _alpaca(row: dict) -> dict:
    context = (row.get("input") or "").strip()
    return {"context": f"\n\nInput: {context}" if context else ""}


def _financemath(row: dict) -> dict:
    tables = "\n\n".join(row.get("tables") or [])
    answer = row["ground_truth"]
    return {
        "tables": f"\n\nTables:\n{tables}" if tables else "",
        "worked": f"{(row.get('python_solution') or '').strip()}\n#### {answer}",
    }


def _sujet(row: dict) -> dict:
    """The text-only view: the first question/answer pair of the page (the page image is not given)."""
    import ast

    try:
        pairs = ast.literal_eval(row["qa_pairs"]) if isinstance(row["qa_pairs"], str) else row["qa_pairs"]
        first = pairs[0]
        return {"question": first["question"], "answer": str(first["answer"])}
    except (ValueError, SyntaxError, IndexError, KeyError, TypeError):
        return {"question": "", "answer": ""}


def _bigcodebench(row: dict) -> dict:
    return {"solution": row["code_prompt"] + row["canonical_solution"]}


def _glue(name, config, columns, labels, prompt, test_split="validation", note="") -> DatasetSpec:
    return DatasetSpec(
        name=name, hub_id="nyu-mll/glue", config=config, train_split="train", test_split=test_split,
        columns=(*columns, "label", "idx"), task="classification", text_columns=columns, labels=labels,
        prompt=prompt, note=note or "GLUE test splits have no labels (-1): the validation split is held out.",
    )


def _mmlu(subject: str) -> DatasetSpec:
    name = "mmlu" if subject == "all" else f"mmlu_{subject}"
    return DatasetSpec(
        name=name, hub_id="cais/mmlu", config=subject, train_split="auxiliary_train" if subject == "all" else "dev",
        test_split="test", columns=("question", "choices", "answer"), task="multiple_choice",
        text_columns=("question",), label_column="answer", choices="choices", prompt="mmlu",
        note="Letter answers A-D. `mmlu` (config all) trains on auxiliary_train; a subject trains on its 5 dev rows "
        "(few-shot data), so subjects are mostly for evaluation (weight 0).",
    )


MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions",
)

MATH_MODULES = (
    "algebra__linear_1d", "algebra__linear_1d_composed", "algebra__linear_2d", "algebra__linear_2d_composed",
    "algebra__polynomial_roots", "algebra__polynomial_roots_composed", "algebra__sequence_next_term",
    "algebra__sequence_nth_term", "arithmetic__add_or_sub", "arithmetic__add_or_sub_in_base",
    "arithmetic__add_sub_multiple", "arithmetic__div", "arithmetic__mixed", "arithmetic__mul",
    "arithmetic__mul_div_multiple", "arithmetic__nearest_integer_root", "arithmetic__simplify_surd",
    "calculus__differentiate", "calculus__differentiate_composed", "comparison__closest",
    "comparison__closest_composed", "comparison__kth_biggest", "comparison__kth_biggest_composed", "comparison__pair",
    "comparison__pair_composed", "comparison__sort", "comparison__sort_composed", "measurement__conversion",
    "measurement__time", "numbers__base_conversion", "numbers__div_remainder", "numbers__div_remainder_composed",
    "numbers__gcd", "numbers__gcd_composed", "numbers__is_factor", "numbers__is_factor_composed", "numbers__is_prime",
    "numbers__is_prime_composed", "numbers__lcm", "numbers__lcm_composed", "numbers__list_prime_factors",
    "numbers__list_prime_factors_composed", "numbers__place_value", "numbers__place_value_composed",
    "numbers__round_number", "numbers__round_number_composed", "polynomials__add", "polynomials__coefficient_named",
    "polynomials__collect", "polynomials__compose", "polynomials__evaluate", "polynomials__evaluate_composed",
    "polynomials__expand", "polynomials__simplify_power", "probability__swr_p_level_set",
    "probability__swr_p_sequence",
)

_SPECS = [
    DatasetSpec(
        name="imdb", hub_id="stanfordnlp/imdb", config=None, train_split="train", test_split="test",
        columns=("text", "label"), task="classification", text_columns=("text",), labels=("negative", "positive"),
        prompt="imdb", note="Hub splits are sorted by label: lancy samples them with a seed, never takes the head.",
    ),
    _glue("cola", "cola", ("sentence",), ("unacceptable", "acceptable"), "cola"),
    _glue("sst2", "sst2", ("sentence",), ("negative", "positive"), "sst2"),
    _glue("mrpc", "mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "mrpc"),
    _glue("qqp", "qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), "qqp"),
    _glue("mnli", "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "mnli",
          test_split="validation_matched", note="Held out: validation_matched (GLUE test labels are hidden)."),
    _glue("mnli_mismatched", "mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), "mnli",
          test_split="validation_mismatched", note="Held out: validation_mismatched (GLUE test labels are hidden)."),
    _glue("qnli", "qnli", ("question", "sentence"), ("entailment", "not_entailment"), "qnli"),
    _glue("rte", "rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), "rte"),
    _glue("wnli", "wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), "rte",
          note="WNLI's label ids are the reverse of RTE's: 0 not_entailment, 1 entailment."),
    *(
        DatasetSpec(
            name=f"fpb_{agree}", hub_id="takala/financial_phrasebank", config=f"sentences_{agree}",
            train_split="train", test_split=None, columns=("sentence", "label"), task="classification",
            text_columns=("sentence",), labels=("negative", "neutral", "positive"), prompt="financial_sentiment",
            revision=PARQUET,
            note="Loaded from the Hub's parquet conversion (its loading script does not run on datasets>=4); "
            "train split only, so held-out rows are set apart from it.",
        )
        for agree in ("allagree", "75agree", "66agree", "50agree")
    ),
    DatasetSpec(
        name="twitter_fin", hub_id="zeroshot/twitter-financial-news-sentiment", config=None, train_split="train",
        test_split="validation", columns=("text", "label"), task="classification", text_columns=("text",),
        labels=("bearish", "bullish", "neutral"), prompt="twitter_fin",
    ),
    DatasetSpec(
        name="fiqa_sa", hub_id="TheFinAI/fiqa-sentiment-classification", config=None, train_split="train",
        test_split="test", columns=("sentence", "score"), task="classification", text_columns=("sentence",),
        labels=("negative", "neutral", "positive"), prompt="financial_sentiment", prepare=_fiqa_label,
        note="score in [-1, 1] (range from the FiQA-2018 task, not the card) -> 3 classes: < -0.1 negative, "
        "> 0.1 positive, else neutral.",
    ),
    _mmlu("all"),
    *(_mmlu(subject) for subject in MMLU_SUBJECTS),
    DatasetSpec(
        name="mmlu_pro", hub_id="TIGER-Lab/MMLU-Pro", config=None, train_split="test", test_split=None,
        columns=("question", "options", "answer"), task="multiple_choice", text_columns=("question",),
        label_column="answer", choices="options", prompt="mmlu",
        note="Up to 10 options (letters A-J). Its 70-row validation split is few-shot data, so lancy trains on a "
        "seeded part of test and holds the rest out.",
    ),
    DatasetSpec(
        name="fiqa", hub_id="LLukas22/fiqa", config=None, train_split="train", test_split="test",
        columns=("question", "answer"), task="qa", text_columns=("question", "answer"), target="answer",
        prompt="fiqa", note="Columns question/answer seen in users' code; the card lists no schema.",
    ),
    DatasetSpec(
        name="financial_qa_10k", hub_id="virattt/financial-qa-10K", config=None, train_split="train",
        test_split=None, columns=("question", "answer", "context"), task="qa",
        text_columns=("context", "question", "answer"), target="answer", prompt="financial_qa_10k",
        note="7,000 questions on excerpts (`context`) of 10-K filings, with `ticker` and `filing` columns (card); "
        "train split only, so held-out rows are set apart from it.",
    ),
    DatasetSpec(
        name="finance_alpaca", hub_id="gbharti/finance-alpaca", config=None, train_split="train", test_split=None,
        columns=("instruction", "input", "output"), task="instruction", text_columns=("instruction", "output"),
        target="output", prompt="alpaca", prepare=_alpaca,
        note="Columns inferred from a derived copy of the dataset; train split only.",
    ),
    *(
        DatasetSpec(
            name=f"sec_reports_{size}", hub_id="JanosAudran/financial-reports-sec", config=f"{size}_lite",
            train_split="train", test_split="test", columns=("sentence",), task="corpus",
            text_columns=("sentence",), views=CORPUS_VIEWS, revision=PARQUET, streaming=True,
            note="10-K filings, one sentence per row; loaded from the parquet conversion (script-based dataset).",
        )
        for size in ("small", "large")
    ),
    DatasetSpec(
        name="fin_news", hub_id="ashraq/financial-news-articles", config=None, train_split="train", test_split=None,
        columns=("title", "text"), task="corpus", text_columns=("title", "text"), views=CORPUS_VIEWS,
        streaming=True, note="306k articles (about 0.5 GB): streamed up to the budget.",
    ),
    DatasetSpec(
        name="sujet_qa", hub_id="sujet-ai/Sujet-Finance-QA-Vision-100k", config=None, train_split="train",
        test_split="test", columns=("qa_pairs",), task="qa", text_columns=(), target="answer", prompt="sujet_qa",
        prepare=_sujet,
        note="Text only: the question and answer of the first QA pair of each page, without the page image, which "
        "lancy's text models cannot take; answers that need the image are unanswerable here.",
    ),
    DatasetSpec(
        name="gsm8k", hub_id="openai/gsm8k", config="main", train_split="train", test_split="test",
        columns=("question", "answer"), task="math", text_columns=("question", "answer"), target="answer",
        prompt="gsm8k", answer_after="####",
    ),
    DatasetSpec(
        name="gsm8k_socratic", hub_id="openai/gsm8k", config="socratic", train_split="train", test_split="test",
        columns=("question", "answer"), task="math", text_columns=("question", "answer"), target="answer",
        prompt="gsm8k", answer_after="####",
    ),
    DatasetSpec(
        name="financemath", hub_id="yale-nlp/FinanceMath", config=None, train_split="validation", test_split=None,
        columns=("question", "ground_truth"), task="math", text_columns=("question",), target="worked",
        prompt="financemath", prepare=_financemath, answer_after="####",
        note="Gated (accept its terms on the Hub, then log in). Only the 200 validation rows have answers, so "
        "held-out rows are set apart from them. The completion is the Python solution and '#### <answer>'.",
    ),
    *(
        DatasetSpec(
            name=f"dm_math_{module}", hub_id="deepmind/math_dataset", config=module, train_split="train",
            test_split="test", columns=("question", "answer"), task="math", text_columns=("question", "answer"),
            target="answer", prompt="dm_math", revision=PARQUET,
            note="Loaded from the parquet conversion (script-based dataset; unconfirmed that every module has one). "
            "Answers are exact strings (numbers, expressions, True/False).",
        )
        for module in MATH_MODULES
    ),
    DatasetSpec(
        name="bigcodebench", hub_id="bigcode/bigcodebench", config=None, train_split="v0.1.2", test_split=None,
        columns=("instruct_prompt", "code_prompt", "canonical_solution", "test"), task="code",
        text_columns=("instruct_prompt",), target="solution", prompt="bigcodebench", prepare=_bigcodebench,
        tests="test", note="Splits are versions (v0.1.2 used); 1,140 tasks, held-out rows set apart from them. "
        "`test` is a unittest module (class TestCases) calling the solution's `task_func`.",
    ),
    DatasetSpec(
        name="common_corpus", hub_id="PleIAs/common_corpus", config=None, train_split="train", test_split=None,
        columns=("text",), task="corpus", text_columns=("text",), views=CORPUS_VIEWS, streaming=True,
        note="About 2T tokens: always streamed to the budget. Metadata columns unconfirmed; only text is used.",
    ),
    DatasetSpec(
        name="bookcorpus", hub_id="bookcorpus/bookcorpus", config=None, train_split="train", test_split=None,
        columns=("text",), task="corpus", text_columns=("text",), views=CORPUS_VIEWS, revision=PARQUET,
        streaming=True, note="74M lower-cased sentences; parquet conversion of a script-based dataset (unconfirmed).",
    ),
    *(
        DatasetSpec(
            name=f"adapt_{config.lower()}", hub_id="AdaptLLM/finance-tasks", config=config, train_split="test",
            test_split=None, columns=("input", "options", "gold_index"), task="classification",
            text_columns=("input",), label_column="gold_index", prompt="passthrough", prepare=_option_label,
            note="Test split only (an evaluation suite): held-out rows are set apart from it. `input` is already "
            "a full few-shot prompt; label words are the row's own options. Columns from users' code.",
        )
        for config in ("FPB", "FiQA_SA", "Headline")
    ),
    *(
        DatasetSpec(
            name=f"adapt_{config.lower()}", hub_id="AdaptLLM/finance-tasks", config=config, train_split="test",
            test_split=None, columns=("input", "label"), task="qa", text_columns=("input",), target="label",
            prompt="passthrough",
            note="Test split only: held-out rows are set apart from it. `input` is a full prompt. Columns from "
            "users' code.",
        )
        for config in ("ConvFinQA", "NER")
    ),
    DatasetSpec(
        name="open_web_math", hub_id="open-web-math/open-web-math", config=None, train_split="train",
        test_split=None, columns=("text",), task="corpus", text_columns=("text",), views=CORPUS_VIEWS,
        streaming=True, note="6.3M documents (57 GB): always streamed to the budget.",
    ),
    DatasetSpec(
        name="wikitext", hub_id="Salesforce/wikitext", config="wikitext-2-raw-v1", train_split="train",
        test_split="test", columns=("text",), task="corpus", text_columns=("text",), views=CORPUS_VIEWS,
        note="One row per line; blank lines are skipped.",
    ),
    DatasetSpec(
        name="wikitext103", hub_id="Salesforce/wikitext", config="wikitext-103-raw-v1", train_split="train",
        test_split="test", columns=("text",), task="corpus", text_columns=("text",), views=CORPUS_VIEWS,
        streaming=True, note="1.8M lines: streamed to the budget.",
    ),
]

CATALOG: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


if __name__ == "__main__":  # python -m lancy.catalog: every dataset name, its Hub id and task
    for spec in _SPECS:
        print(f"{spec.name}\t{spec.hub_id}{f' ({spec.config})' if spec.config else ''}\t{spec.task}")
