"""Every lancy.catalog entry, end to end through lancy.harmonize, on rows in the dataset's real column layout.

Each dataset family has one row factory. A factory returns hand-written rows in the Hub layout documented in
the dataset's card (extra columns included: `idx`, `subject`, `_id`, `image`, ...) and, for each row, the exact
record lancy must make of it: prompt, completion, reference answer and valid labels, plus the row's
pretraining text. The expected values are written out here by hand (label words from the dataset cards,
instruction lines, cues) rather than read back from lancy, so a wrong label map or template shows up.
"""
import re
from dataclasses import dataclass

import pytest

from lancy import catalog
from lancy.answers import math_correct, parse_label, syntax_valid, token_f1
from lancy.catalog import CATALOG, CORPUS_VIEWS, MATH_MODULES, MMLU_SUBJECTS, TASKS, VIEWS
from lancy.errors import LancyError
from lancy.harmonize import check_columns, harmonize_rows, to_record, to_text
from lancy.prompts import TEMPLATES


@dataclass(frozen=True)
class Case:
    row: dict  # a raw row, in the dataset's Hub layout
    text: str | None  # its pretraining text (to_text)
    prompt: str | None = None  # the exact prompt (None: a corpus, which has no task record)
    completion: str | None = None
    answer: str | None = None
    labels: tuple[str, ...] = ()
    cue: str = ""  # what the prompt ends with, right before the answer
    inputs: tuple[str, ...] = ()  # texts of the row that the prompt must include


# ------------------------------------------------------------------------------------------------- GLUE

GLUE = {
    # name: (text columns and values, label words in label-id order (dataset card), exact prompt)
    "cola": (
        {"sentence": "The more we study verbs, the crazier they get."},
        ("unacceptable", "acceptable"),
        "Determine if this sentence is grammatically acceptable or unacceptable.\n\n"
        "Sentence: The more we study verbs, the crazier they get.\nGrammar:",
    ),
    "sst2": (
        {"sentence": "hide new secretions from the parental units "},
        ("negative", "positive"),
        "Classify the sentiment of this sentence as either 'positive' or 'negative'.\n\n"
        "Sentence: hide new secretions from the parental units \nSentiment:",
    ),
    "mrpc": (
        {"sentence1": "Amrozi accused his brother of deliberately distorting his evidence.",
         "sentence2": "Referring to him as only the witness, Amrozi accused his brother of distorting evidence."},
        ("not_equivalent", "equivalent"),
        "Determine if these two sentences are equivalent or not_equivalent in meaning.\n\n"
        "Sentence 1: Amrozi accused his brother of deliberately distorting his evidence.\n"
        "Sentence 2: Referring to him as only the witness, Amrozi accused his brother of distorting evidence.\n"
        "Relation:",
    ),
    "qqp": (
        {"question1": "How is the life of a math student?", "question2": "Which level of math do you study?"},
        ("not_duplicate", "duplicate"),
        "Determine if these two questions are duplicate or not_duplicate.\n\n"
        "Question 1: How is the life of a math student?\nQuestion 2: Which level of math do you study?\nRelation:",
    ),
    "mnli": (
        {"premise": "Conceptually cream skimming has two basic dimensions.",
         "hypothesis": "Product and geography are what make cream skimming work."},
        ("entailment", "neutral", "contradiction"),
        "Determine if the premise entails the hypothesis: entailment, neutral or contradiction.\n\n"
        "Premise: Conceptually cream skimming has two basic dimensions.\n"
        "Hypothesis: Product and geography are what make cream skimming work.\nRelation:",
    ),
    "mnli_mismatched": (
        {"premise": "Your contribution helped make it possible.", "hypothesis": "Your contributions were of no help."},
        ("entailment", "neutral", "contradiction"),
        "Determine if the premise entails the hypothesis: entailment, neutral or contradiction.\n\n"
        "Premise: Your contribution helped make it possible.\nHypothesis: Your contributions were of no help.\n"
        "Relation:",
    ),
    "qnli": (
        {"question": "When did the third Digimon series begin?",
         "sentence": "Unlike the two seasons before it, the third series was set in the real world."},
        ("entailment", "not_entailment"),
        "Determine if the sentence answers the question: entailment or not_entailment.\n\n"
        "Question: When did the third Digimon series begin?\n"
        "Sentence: Unlike the two seasons before it, the third series was set in the real world.\nRelation:",
    ),
    "rte": (
        {"sentence1": "No Weapons of Mass Destruction Found in Iraq Yet.",
         "sentence2": "Weapons of Mass Destruction Found in Iraq."},
        ("entailment", "not_entailment"),
        "Determine if the first sentence entails the second: entailment or not_entailment.\n\n"
        "Sentence 1: No Weapons of Mass Destruction Found in Iraq Yet.\n"
        "Sentence 2: Weapons of Mass Destruction Found in Iraq.\nRelation:",
    ),
    "wnli": (  # WNLI's ids are the reverse of RTE's: 0 not_entailment, 1 entailment
        {"sentence1": "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
         "sentence2": "The carrot had a hole."},
        ("not_entailment", "entailment"),
        "Determine if the first sentence entails the second: entailment or not_entailment.\n\n"
        "Sentence 1: I stuck a pin through a carrot. When I pulled the pin out, it had a hole.\n"
        "Sentence 2: The carrot had a hole.\nRelation:",
    ),
}


def glue_rows(name):
    fields, words, prompt = GLUE[name]
    text = "\n".join(value.strip() for value in fields.values())
    cue = prompt[prompt.rindex("\n"):]
    return [
        Case({**fields, "label": index, "idx": 41 + index}, text, prompt, " " + word, word, words, cue,
             tuple(fields.values()))
        for index, word in enumerate(words)
    ]


# ------------------------------------------------------------------------------------ sentiment datasets

IMDB_TEXT = "A slow start, but the last hour is wonderful.<br /><br />Go and see it."


def imdb_rows(name):
    prompt = ("Classify the sentiment of this movie review as either 'positive' or 'negative'.\n\n"
              f"Review: {IMDB_TEXT}\nSentiment:")
    words = ("negative", "positive")
    return [Case({"text": IMDB_TEXT, "label": index}, IMDB_TEXT, prompt, " " + word, word, words, "\nSentiment:",
                 (IMDB_TEXT,)) for index, word in enumerate(words)]


def financial_sentiment_prompt(sentence):
    return ("Classify the sentiment of this financial sentence as 'negative', 'neutral' or 'positive'.\n\n"
            f"Sentence: {sentence}\nSentiment:")


FPB_SENTENCE = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007 ."


def fpb_rows(name):
    words = ("negative", "neutral", "positive")  # 0, 1, 2 in every sentences_* config
    return [
        Case({"sentence": FPB_SENTENCE, "label": index}, FPB_SENTENCE, financial_sentiment_prompt(FPB_SENTENCE),
             " " + word, word, words, "\nSentiment:", (FPB_SENTENCE,))
        for index, word in enumerate(words)
    ]


TWEET = "$BYND - JPMorgan reels in expectations on Beyond Meat https://t.co/bd0xbFGjkT"


def twitter_fin_rows(name):
    words = ("bearish", "bullish", "neutral")  # LABEL_0 Bearish, LABEL_1 Bullish, LABEL_2 Neutral
    prompt = ("Classify the sentiment of this financial tweet as 'bearish', 'bullish' or 'neutral'.\n\n"
              f"Tweet: {TWEET}\nSentiment:")
    return [Case({"text": TWEET, "label": index}, TWEET, prompt, " " + word, word, words, "\nSentiment:", (TWEET,))
            for index, word in enumerate(words)]


FIQA_SENTENCE = "Royal Mail chairman Donald Brydon set to step down"
FIQA_SCORES = [  # score in [-1, 1]; below -0.1 negative, above 0.1 positive, else neutral
    (-0.5, "negative"), (-0.11, "negative"), (-0.1, "neutral"), (0.0, "neutral"), (0.1, "neutral"),
    (0.11, "positive"), (0.6, "positive"), (-1.0, "negative"), (1.0, "positive"),
]


def fiqa_sa_row(score):
    return {"_id": "1", "sentence": FIQA_SENTENCE, "target": "Royal Mail", "aspect": "Corporate/Appointment",
            "score": score, "type": "headline"}


def fiqa_sa_rows(name):
    words = ("negative", "neutral", "positive")
    return [Case(fiqa_sa_row(score), FIQA_SENTENCE, financial_sentiment_prompt(FIQA_SENTENCE), " " + word, word,
                 words, "\nSentiment:", (FIQA_SENTENCE,)) for score, word in FIQA_SCORES]


# ----------------------------------------------------------------------------------------- multiple choice

MC_INSTRUCTION = "Answer the multiple-choice question with the letter of the correct option.\n\n"
MMLU_QUESTION = "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q."


def mmlu_rows(name):
    subject = "" if name == "mmlu" else name.removeprefix("mmlu_")  # auxiliary_train rows have no subject
    row = {"question": MMLU_QUESTION, "subject": subject, "choices": ["0", "4", "2", "6"]}
    prompt = f"{MC_INSTRUCTION}{MMLU_QUESTION}\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    return [Case({**row, "answer": index}, MMLU_QUESTION, prompt, " " + letter, letter, ("A", "B", "C", "D"),
                 "\nAnswer:", (MMLU_QUESTION, "A. 0", "D. 6")) for index, letter in enumerate("ABCD")]


PRO_QUESTION = "Typical advertising regulatory bodies suggest, for example that adverts must not:"
PRO_OPTIONS = [f"Option number {i}" for i in range(1, 11)]


def mmlu_pro_rows(name):
    ten = {"question_id": 70, "question": PRO_QUESTION, "options": PRO_OPTIONS, "answer": "J", "answer_index": 9,
           "cot_content": "", "category": "business", "src": "ori_mmlu-business_ethics"}
    ten_prompt = MC_INSTRUCTION + PRO_QUESTION + "\n" + "\n".join(
        f"{letter}. Option number {i}" for i, letter in enumerate("ABCDEFGHIJ", start=1)) + "\nAnswer:"
    three = {**ten, "question_id": 71, "options": ["Safe practices", "Fear", "Jealousy"], "answer": "B",
             "answer_index": 1}
    three_prompt = f"{MC_INSTRUCTION}{PRO_QUESTION}\nA. Safe practices\nB. Fear\nC. Jealousy\nAnswer:"
    return [
        Case(ten, PRO_QUESTION, ten_prompt, " J", "J", tuple("ABCDEFGHIJ"), "\nAnswer:",
             (PRO_QUESTION, "A. Option number 1", "J. Option number 10")),
        Case(three, PRO_QUESTION, three_prompt, " B", "B", ("A", "B", "C"), "\nAnswer:", ("C. Jealousy",)),
    ]


# ------------------------------------------------------------------------------------------ QA, instructions

FIQA_QUESTION = "What is considered a business expense on a business trip?"
FIQA_ANSWER = "The IRS Guidance pertaining to the subject.  In general the best I can say is..."


def fiqa_rows(name):
    prompt = f"Answer the financial question.\n\nQuestion: {FIQA_QUESTION}\nAnswer:"
    row = {"question": FIQA_QUESTION, "answer": FIQA_ANSWER + "\n"}  # the reference is stripped
    return [Case(row, f"{FIQA_QUESTION}\n{FIQA_ANSWER}", prompt, " " + FIQA_ANSWER, FIQA_ANSWER, (), "\nAnswer:",
                 (FIQA_QUESTION,))]


FQA_CONTEXT = "Since our original focus on PC graphics, we have expanded into various markets, including data centers."
FQA_QUESTION = "What area did NVIDIA initially focus on before expanding into other markets?"
FQA_ANSWER = "NVIDIA initially focused on PC graphics."


def financial_qa_10k_row(**changes):
    """A row in the card's schema: question, answer, context, ticker, filing (all strings)."""
    return {"question": FQA_QUESTION, "answer": FQA_ANSWER, "context": FQA_CONTEXT, "ticker": "NVDA",
            "filing": "2023_10K", **changes}


def financial_qa_10k_rows(name):
    prompt = ("Answer the question about a company's 10-K filing from the excerpt.\n\n"
              f"Excerpt: {FQA_CONTEXT}\nQuestion: {FQA_QUESTION}\nAnswer:")
    return [Case(financial_qa_10k_row(), f"{FQA_CONTEXT}\n{FQA_QUESTION}\n{FQA_ANSWER}", prompt, " " + FQA_ANSWER,
                 FQA_ANSWER, (), "\nAnswer:", (FQA_CONTEXT, FQA_QUESTION))]


ALPACA = "Below is an instruction. Write a response that completes it.\n\n"


def finance_alpaca_rows(name):
    with_input = {"instruction": "Summarize the filing.", "input": "Revenue grew 12% to $4.1bn; margins fell.",
                  "output": "Revenue rose but margins shrank.", "text": ""}
    without = {"instruction": "For a car, what scams can be plotted with 0% financing vs rebate?",
               "input": "", "output": "The car deal makes money 3 ways.", "text": ""}
    blank_input = {**without, "input": "   \n"}
    return [
        Case(with_input, "Summarize the filing.\nRevenue rose but margins shrank.",
             f"{ALPACA}Instruction: Summarize the filing.\n\nInput: Revenue grew 12% to $4.1bn; margins fell.\n"
             "Response:", " Revenue rose but margins shrank.", "Revenue rose but margins shrank.", (), "\nResponse:",
             ("Summarize the filing.", "Revenue grew 12% to $4.1bn; margins fell.")),
        *(
            Case(row, f"{without['instruction']}\n{without['output']}",
                 f"{ALPACA}Instruction: {without['instruction']}\nResponse:", " " + without["output"],
                 without["output"], (), "\nResponse:", (without["instruction"],))
            for row in (without, blank_input)
        ),
    ]


SUJET_PROMPT = "Answer the question about a financial document.\n\nQuestion: {}\nAnswer:"


def sujet_qa_rows(name):
    pairs = [{"question": "What is the total revenue reported for 2020?", "answer": "$4.2 million"},
             {"question": "Which company filed the report?", "answer": "Acme Corp"}]
    numeric = [{"question": "What is the tax rate?", "answer": 21.5}]
    image = {"bytes": b"\x89PNG...", "path": None}  # the page image, unused by the text-only view
    return [
        Case({"image": image, "doc_id": "a1", "qa_pairs": str(pairs)}, None,  # a Python repr, single quotes
             SUJET_PROMPT.format(pairs[0]["question"]), " $4.2 million", "$4.2 million", (), "\nAnswer:",
             (pairs[0]["question"],)),
        Case({"image": image, "doc_id": "a2", "qa_pairs": '[{"question": "What is the tax rate?", "answer": 21.5}]'},
             None, SUJET_PROMPT.format(numeric[0]["question"]), " 21.5", "21.5", (), "\nAnswer:"),
        Case({"image": image, "doc_id": "a3", "qa_pairs": pairs}, None,  # already a list (e.g. a local file)
             SUJET_PROMPT.format(pairs[0]["question"]), " $4.2 million", "$4.2 million", (), "\nAnswer:"),
    ]


# ------------------------------------------------------------------------------------------------- math

GSM8K_QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                  "How many clips did Natalia sell altogether in April and May?")
GSM8K_MAIN = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
              "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")
GSM8K_SOCRATIC = ("How many clips did Natalia sell in May? ** Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                  "How many clips did Natalia sell altogether in April and May? ** "
                  "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")
GSM8K_PROMPT = "Solve this math problem step by step. Give the final number after '####'.\n\nQuestion: {}\nAnswer:"


def gsm8k_rows(name):
    worked = GSM8K_SOCRATIC if name == "gsm8k_socratic" else GSM8K_MAIN
    thousands = "Add them: 1,000 + 234 = <<1000+234=1234>>1,234\n#### 1,234"
    return [
        Case({"question": GSM8K_QUESTION, "answer": worked}, f"{GSM8K_QUESTION}\n{worked}",
             GSM8K_PROMPT.format(GSM8K_QUESTION), " " + worked, "72", (), "\nAnswer:", (GSM8K_QUESTION,)),
        Case({"question": "How many in all?", "answer": thousands}, f"How many in all?\n{thousands}",
             GSM8K_PROMPT.format("How many in all?"), " " + thousands, "1234", (), "\nAnswer:"),
        Case({"question": "What is the change?", "answer": "It fell by 5.\n#### -5"},
             "What is the change?\nIt fell by 5.\n#### -5", GSM8K_PROMPT.format("What is the change?"),
             " It fell by 5.\n#### -5", "-5", (), "\nAnswer:"),
    ]


FM_INSTRUCTION = "Solve this financial math problem with a Python function, then give the final number after '####'."
FM_QUESTION = "A bond pays a 5% annual coupon on a face value of 1,000. What is its current yield at a price of 950?"
FM_TABLE = "| Year | Cash flow |\n|---|---|\n| 1 | 50 |"
FM_TABLE2 = "| Price | 950 |\n|---|---|"
FM_SOLUTION = "def solution():\n    coupon = 0.05 * 1000\n    return round(coupon / 950 * 100, 3)\n"


def financemath_row(**changes):
    row = {"question_id": "validation-1", "question": FM_QUESTION, "tables": [FM_TABLE],
           "python_solution": FM_SOLUTION, "ground_truth": 5.263, "topic": "Fixed Income",
           "knowledge_terms": [{"name": "Current Yield", "definition": "annual income / price"}]}
    return {**row, **changes}


def financemath_rows(name):
    prompt = f"{FM_INSTRUCTION}\n\nQuestion: {FM_QUESTION}{{}}\nAnswer:"
    worked = FM_SOLUTION.strip() + "\n#### 5.263"
    return [
        Case(financemath_row(), FM_QUESTION, prompt.format(f"\n\nTables:\n{FM_TABLE}"), " " + worked, "5.263", (),
             "\nAnswer:", (FM_QUESTION, FM_TABLE)),
        Case(financemath_row(tables=[FM_TABLE, FM_TABLE2]), FM_QUESTION,
             prompt.format(f"\n\nTables:\n{FM_TABLE}\n\n{FM_TABLE2}"), " " + worked, "5.263", (), "\nAnswer:"),
        Case(financemath_row(tables=[], ground_truth=-1250.0), FM_QUESTION, prompt.format(""),
             " " + FM_SOLUTION.strip() + "\n#### -1250.0", "-1250", (), "\nAnswer:"),
        # The test split has no python_solution: the completion is the answer line alone, '####' still there.
        Case(financemath_row(python_solution=None, ground_truth=12.5), FM_QUESTION,
             prompt.format(f"\n\nTables:\n{FM_TABLE}"), " #### 12.5", "12.5", (), "\nAnswer:"),
        Case(financemath_row(python_solution="", ground_truth=0.0), FM_QUESTION,
             prompt.format(f"\n\nTables:\n{FM_TABLE}"), " #### 0.0", "0", (), "\nAnswer:"),
    ]


DM_MATH = [  # (question, answer as stored, reference): exact answers, numeric or not
    ("Solve 2*a + 6 = 0 for a.", "-3", "-3"),
    ("Is 97 a prime number?", "True\n", "True"),
    ("Expand (x + 1)*(x - 1) + 2.", "x**2 + 1", "x**2 + 1"),
    ("What is 0.5 times 3?", "1.5", "1.5"),
]


def dm_math_rows(name):
    return [
        Case({"question": question, "answer": stored}, f"{question}\n{stored.strip()}",
             f"Answer the math question.\n\nQuestion: {question}\nAnswer:", " " + reference, reference, (),
             "\nAnswer:", (question,))
        for question, stored, reference in DM_MATH
    ]


# ------------------------------------------------------------------------------------------------- code

BCB_INSTRUCT = ("Calculates the sum of the absolute differences of a list.\nThe function should output with:\n"
                "    int: the sum.\nYou should write self-contained code starting with:\n```\n"
                "import itertools\ndef task_func(numbers):\n```")
BCB_CODE_PROMPT = "import itertools\ndef task_func(numbers):\n"
BCB_SOLUTION = "    return sum(abs(a - b) for a, b in itertools.pairwise(numbers))\n"


def bigcodebench_rows(name):
    row = {"task_id": "BigCodeBench/0", "complete_prompt": BCB_CODE_PROMPT + '    """Sum."""\n',
           "instruct_prompt": BCB_INSTRUCT, "canonical_solution": BCB_SOLUTION, "code_prompt": BCB_CODE_PROMPT,
           "test": "import unittest\nclass TestCases(unittest.TestCase):\n    pass\n", "entry_point": "task_func",
           "doc_struct": "{}", "libs": "['itertools']"}
    code = (BCB_CODE_PROMPT + BCB_SOLUTION).strip()
    return [Case(row, BCB_INSTRUCT, BCB_INSTRUCT + "\n\nSolution:", "\n" + code, code, (), "\n\nSolution:",
                 (BCB_INSTRUCT,))]


# -------------------------------------------------------------------------------------------- AdaptLLM

ADAPT = {  # name: (few-shot input, options, gold index)
    "adapt_fpb": ("Sales fell 5% .\nAnswer: negative\n\nOperating profit rose to EUR 13.1 mn .\nAnswer:",
                  ["Negative", "Neutral", "Positive"], 2),
    "adapt_fiqa_sa": ("Royal Mail chairman Donald Brydon set to step down\nQuestion: what is the sentiment?\nAnswer:",
                      ["negative", "neutral", "positive"], 1),
    "adapt_headline": ("Headline: Gold falls to Rs 30,800\nDoes the news headline talk about price going up? No\n\n"
                       "Headline: gold prices rise\nDoes the news headline talk about price going down?",
                       ["Yes", "No"], 1),
}


def adapt_classification_rows(name):
    text, options, gold = ADAPT[name]
    labels = tuple(o.lower() for o in options)
    return [Case({"id": f"{name}-{index}", "input": text, "options": options, "gold_index": index}, text, text,
                 " " + labels[index], labels[index], labels, "", (text,))
            for index in sorted({gold, 0})]


ADAPT_QA = {
    "adapt_convfinqa": ("Table: | 2009 | 2008 |\n| 3.5 | 2.1 |\nQuestion: what was the change from 2008 to 2009?\n"
                        "Answer:", "1.4"),
    "adapt_ner": ("Extract the named entities.\nText: Apple Inc. hired Tim Cook in Cupertino.\nAnswer:",
                  "Apple Inc.: organization; Tim Cook: person; Cupertino: location"),
}


def adapt_qa_rows(name):
    text, label = ADAPT_QA[name]
    return [Case({"id": f"{name}-0", "input": text, "label": label}, text, text, " " + label, label, (), "\nAnswer:",
                 (text,))]


# ---------------------------------------------------------------------------------------------- corpora

def wikitext_rows(name):
    return [Case({"text": " = Valkyria Chronicles III = \n"}, "= Valkyria Chronicles III ="),
            Case({"text": " Senjō no Valkyria 3 : <unk> Chronicles is a tactical role @-@ playing game . \n"},
                 "Senjō no Valkyria 3 : <unk> Chronicles is a tactical role @-@ playing game ."),
            Case({"text": ""}, None), Case({"text": " \n"}, None)]


def sec_reports_rows(name):
    row = {"cik": "0000001750", "sentence": "Net sales increased 7% in fiscal 2020. ", "section": 7,
           "labels": {"1d": 0, "5d": 1, "30d": 0}, "filingDate": "2020-07-21", "docID": "0000001750_10-K_2020",
           "sentenceID": "0000001750_10-K_2020_section_7_12", "sentenceCount": 412}
    return [Case(row, "Net sales increased 7% in fiscal 2020."), Case({**row, "sentence": "  "}, None)]


def fin_news_rows(name):
    row = {"title": "Stocks rally as Fed holds rates", "text": "NEW YORK (Reuters) - U.S. stocks rose on Wednesday.",
           "url": "https://www.reuters.com/article/1"}
    return [Case(row, "Stocks rally as Fed holds rates\nNEW YORK (Reuters) - U.S. stocks rose on Wednesday."),
            Case({**row, "title": ""}, "NEW YORK (Reuters) - U.S. stocks rose on Wednesday.")]


def text_corpus_rows(name):
    extra = {
        "common_corpus": {"identifier": "doc-1", "collection": "Open Science", "license": "CC-By", "date": "2020",
                          "title": "A paper", "language": "English", "word_count": 5, "token_count": 7},
        "bookcorpus": {},
        "open_web_math": {"url": "https://math.stackexchange.com/q/1", "date": "2023-01-01",
                          "metadata": '{"extraction_info": {"found_math": true}}'},
    }[name]
    text = "Let $f(x) = x^2$. Then $f'(x) = 2x$.\n"
    return [Case({**extra, "text": text}, text.strip()), Case({**extra, "text": "\n"}, None)]


# -------------------------------------------------------------------------------------- factory registry

def factory(name):
    """The row factory of a catalog entry's dataset family, or None when no family covers it."""
    families = {
        **dict.fromkeys(GLUE, glue_rows),
        "imdb": imdb_rows,
        **dict.fromkeys((f"fpb_{agree}" for agree in ("allagree", "75agree", "66agree", "50agree")), fpb_rows),
        "twitter_fin": twitter_fin_rows,
        "fiqa_sa": fiqa_sa_rows,
        "mmlu": mmlu_rows,
        **dict.fromkeys((f"mmlu_{subject}" for subject in MMLU_SUBJECTS), mmlu_rows),
        "mmlu_pro": mmlu_pro_rows,
        "fiqa": fiqa_rows,
        "financial_qa_10k": financial_qa_10k_rows,
        "finance_alpaca": finance_alpaca_rows,
        "sujet_qa": sujet_qa_rows,
        "gsm8k": gsm8k_rows,
        "gsm8k_socratic": gsm8k_rows,
        "financemath": financemath_rows,
        **dict.fromkeys((f"dm_math_{module}" for module in MATH_MODULES), dm_math_rows),
        "bigcodebench": bigcodebench_rows,
        **dict.fromkeys(ADAPT, adapt_classification_rows),
        **dict.fromkeys(ADAPT_QA, adapt_qa_rows),
        "sec_reports_small": sec_reports_rows,
        "sec_reports_large": sec_reports_rows,
        "fin_news": fin_news_rows,
        "common_corpus": text_corpus_rows,
        "bookcorpus": text_corpus_rows,
        "open_web_math": text_corpus_rows,
        "wikitext": wikitext_rows,
        "wikitext103": wikitext_rows,
    }
    return families.get(name)


NAMES = list(CATALOG)
TASK_NAMES = [name for name in NAMES if CATALOG[name].task != "corpus"]
CORPUS_NAMES = [name for name in NAMES if CATALOG[name].task == "corpus"]


def cases(name):
    return factory(name)(name)


def test_catalog_is_the_widened_one():
    assert len(NAMES) >= 140
    assert {"imdb", "sst2", "mrpc", "gsm8k", "wikitext", "mmlu", "mmlu_pro", "bigcodebench", "wikitext103",
            "financial_qa_10k"} <= set(NAMES)
    assert len(MMLU_SUBJECTS) == 57 and all(f"mmlu_{s}" in CATALOG for s in MMLU_SUBJECTS)
    assert all(f"dm_math_{m}" in CATALOG for m in MATH_MODULES)


def test_every_catalog_entry_is_covered_by_a_row_factory():
    assert [name for name in NAMES if factory(name) is None] == []
    assert all(cases(name) for name in NAMES)


def test_names_are_unique_and_usable_as_dvc_stage_keys():
    names = [spec.name for spec in catalog._SPECS]
    assert len(names) == len(set(names)) == len(CATALOG)
    for name in names:
        assert re.fullmatch(r"[a-z0-9_]+", name), name
        assert CATALOG[name].name == name


@pytest.mark.parametrize("name", NAMES)
def test_entry_is_consistent(name):
    spec = CATALOG[name]
    rows = [case.row for case in cases(name)]
    assert spec.task in TASKS
    assert set(spec.views) <= set(VIEWS) and spec.views
    assert set(spec.text_columns) <= set(spec.columns)
    assert spec.hub_id.count("/") == 1
    for row in rows:
        check_columns(spec, row, "train split")  # the real layout has every column the entry expects
        assert set(spec.columns) <= set(row)
    if spec.task == "corpus":
        assert spec.views == CORPUS_VIEWS
        assert spec.prompt is None
        assert spec.text_columns
        return
    assert spec.prompt in TEMPLATES
    if spec.task == "classification":
        # Label words from the entry, or per row from its `prepare` (AdaptLLM rows carry their options).
        derived = [spec.prepare(row) if spec.prepare else {} for row in rows]
        assert len(spec.labels) >= 2 or all(len(d.get("labels", ())) >= 2 for d in derived)
        for row, fields in zip(rows, derived, strict=True):  # a raw column, or derived (fiqa_sa: from score)
            assert spec.label_column in {**row, **fields}
    if spec.task == "multiple_choice":
        assert spec.choices is not None and spec.choices in spec.columns
        assert spec.label_column in spec.columns
    if spec.task in ("math", "qa", "instruction", "code"):
        assert spec.target is not None
        for row in rows:  # a raw column, or a field the entry's prepare derives
            assert spec.target in {**row, **(spec.prepare(row) if spec.prepare else {})}
    if spec.answer_after is not None:
        assert spec.task == "math"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_rows_become_exact_records(name):
    spec = CATALOG[name]
    for case in cases(name):
        record, reason = to_record(spec, case.row)
        assert reason is None, case.row
        assert record == {
            "source": name,
            "task": spec.task,
            "prompt": case.prompt,
            "completion": case.completion,
            "answer": case.answer,
            "labels": list(case.labels),
            "tests": case.row.get(spec.tests, "") if spec.tests else "",
        }


@pytest.mark.parametrize("name", TASK_NAMES)
def test_prompt_holds_the_input_and_ends_right_before_the_answer(name):
    spec = CATALOG[name]
    for case in cases(name):
        record, _ = to_record(spec, case.row)
        prompt = record["prompt"]
        assert prompt.endswith(case.cue)
        assert not prompt.endswith((" ", "\n"))  # the completion brings its own leading space
        lead = "\n" if spec.task == "code" else " "  # code starts on its own line
        assert record["completion"].startswith(lead) and not record["completion"].startswith(lead + " ")
        for text in case.inputs:
            assert text in prompt
        if spec.prompt != "passthrough":
            instruction = TEMPLATES[spec.prompt].split("{", 1)[0]
            assert prompt.startswith(instruction)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_reference_completion_is_judged_correct(name):
    """The evaluation's own reading of the reference completion gives the reference answer full marks."""
    spec = CATALOG[name]
    for case in cases(name):
        record, _ = to_record(spec, case.row)
        completion, answer, labels = record["completion"], record["answer"], record["labels"]
        if spec.task in ("classification", "multiple_choice"):
            assert answer in labels
            assert parse_label(completion, labels) == answer
        elif spec.task == "math":
            assert labels == []
            assert math_correct(completion, answer)
        elif spec.task in ("qa", "instruction"):
            assert labels == []
            assert token_f1(completion, answer) == 1.0
        else:
            assert labels == []
            assert syntax_valid(answer)


@pytest.mark.parametrize("name", NAMES)
def test_pretraining_text(name):
    spec = CATALOG[name]
    for case in cases(name):
        assert to_text(spec, case.row) == case.text


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_rows_have_no_task_record(name):
    with pytest.raises(ValueError, match=name):
        to_record(CATALOG[name], cases(name)[0].row)
    dropped = {}
    records, texts = harmonize_rows(CATALOG[name], [c.row for c in cases(name)], "train", dropped)
    assert records == [] and dropped == {}
    assert texts == [c.text for c in cases(name) if c.text is not None]


@pytest.mark.parametrize("name", NAMES)
def test_missing_column_names_dataset_and_column(name):
    spec = CATALOG[name]
    row = cases(name)[0].row
    for column in spec.columns:
        broken = {k: v for k, v in row.items() if k != column}
        with pytest.raises(LancyError) as caught:
            harmonize_rows(spec, [broken], "test", {})
        message = str(caught.value)
        assert f"dataset {name}" in message and f"`{column}`" in message and "test split" in message


# ------------------------------------------------------------------------------------------- dropped rows

MMLU_ROW = mmlu_rows("mmlu")[0].row
PRO_ROW = mmlu_pro_rows("mmlu_pro")[0].row
GLUE_ROW = glue_rows("rte")[0].row

BAD_ROWS = [
    ("mmlu", {**MMLU_ROW, "answer": 7}, "bad_label"),  # answer 7 of 4 options
    ("mmlu_abstract_algebra", {**MMLU_ROW, "answer": 4}, "bad_label"),
    ("mmlu", {**MMLU_ROW, "answer": -1}, "bad_label"),
    ("mmlu", {**MMLU_ROW, "answer": None}, "bad_label"),
    ("mmlu", {**MMLU_ROW, "choices": []}, "bad_options"),
    ("mmlu", {**MMLU_ROW, "choices": ["0", "", "2", "6"]}, "bad_options"),
    ("mmlu", {**MMLU_ROW, "question": " "}, "empty_text"),
    ("mmlu_pro", {**PRO_ROW, "options": PRO_OPTIONS[:4], "answer": "J"}, "bad_label"),  # J needs 10 options
    ("mmlu_pro", {**PRO_ROW, "answer": "K"}, "bad_label"),
    ("mmlu_pro", {**PRO_ROW, "options": [*PRO_OPTIONS, "Option number 11"]}, "bad_options"),  # over 10
    ("fiqa_sa", fiqa_sa_row(None), "bad_label"),
    ("fiqa_sa", fiqa_sa_row("0.5"), "bad_label"),
    ("fiqa_sa", {**fiqa_sa_row(0.5), "sentence": ""}, "empty_text"),
    ("rte", {**GLUE_ROW, "label": -1}, "bad_label"),  # GLUE test splits: label -1
    ("mnli", {**glue_rows("mnli")[0].row, "label": 3}, "bad_label"),
    ("cola", {**glue_rows("cola")[0].row, "label": True}, "bad_label"),
    ("fpb_allagree", {"sentence": FPB_SENTENCE, "label": 3}, "bad_label"),
    ("twitter_fin", {"text": TWEET, "label": "1"}, "bad_label"),
    ("gsm8k", {"question": GSM8K_QUESTION, "answer": "Natalia sold 72 clips."}, "unparseable_answer"),
    ("gsm8k_socratic", {"question": GSM8K_QUESTION, "answer": "How many? ** 72 clips."}, "unparseable_answer"),
    ("gsm8k", {"question": GSM8K_QUESTION, "answer": "Some clips.\n#### many"}, "unparseable_answer"),
    ("gsm8k", {"question": GSM8K_QUESTION, "answer": ""}, "empty_text"),
    ("financemath", financemath_row(ground_truth=None), "unparseable_answer"),
    ("financemath", financemath_row(question=""), "empty_text"),
    ("dm_math_arithmetic__add_or_sub", {"question": "What is 2 + 2?", "answer": " \n"}, "empty_text"),
    ("fiqa", {"question": FIQA_QUESTION, "answer": ""}, "empty_text"),  # a QA row with an empty answer
    ("fiqa", {"question": FIQA_QUESTION, "answer": None}, "empty_text"),
    ("financial_qa_10k", financial_qa_10k_row(context=" "), "empty_text"),  # no excerpt: not answerable
    ("financial_qa_10k", financial_qa_10k_row(answer=""), "empty_text"),
    ("adapt_convfinqa", {"id": "c", "input": "Question: what?\nAnswer:", "label": "  "}, "empty_text"),
    ("adapt_ner", {"id": "n", "input": "", "label": "Apple: organization"}, "empty_text"),
    ("sujet_qa", {"image": None, "qa_pairs": "[]"}, "empty_text"),
    ("sujet_qa", {"image": None, "qa_pairs": "[{'question': 'What?', 'answer': ''}]"}, "empty_text"),
    ("sujet_qa", {"image": None, "qa_pairs": "not a list"}, "empty_text"),
    ("sujet_qa", {"image": None, "qa_pairs": "[{'q': 'What?'}]"}, "empty_text"),
    ("finance_alpaca", {"instruction": "Explain.", "input": "", "output": "", "text": ""}, "empty_text"),
    ("finance_alpaca", {"instruction": " ", "input": "", "output": "Because.", "text": ""}, "empty_text"),
    ("bigcodebench", {**bigcodebench_rows("bigcodebench")[0].row, "instruct_prompt": ""}, "empty_text"),
    ("adapt_fpb", {"id": "f", "input": "Sales fell .\nAnswer:", "options": ["negative", "neutral", "positive"],
                   "gold_index": 3}, "bad_label"),
    ("adapt_headline", {"id": "h", "input": "Headline: x\nAnswer:", "options": [], "gold_index": 0}, "bad_label"),
    ("imdb", {"text": IMDB_TEXT, "label": -1}, "bad_label"),  # the unsupervised split
]


@pytest.mark.parametrize(("name", "row", "reason"), BAD_ROWS, ids=[f"{n}-{r}-{i}" for i, (n, _, r) in
                                                                   enumerate(BAD_ROWS)])
def test_bad_rows_are_dropped_with_a_reason(name, row, reason):
    assert to_record(CATALOG[name], row) == (None, reason)


def test_financemath_completion_always_has_the_answer_line():
    for case in financemath_rows("financemath"):
        record, _ = to_record(CATALOG["financemath"], case.row)
        assert "\n#### " in record["completion"] or record["completion"].startswith(" #### ")
        assert record["completion"].rsplit("#### ", 1)[1] == str(case.row["ground_truth"])
    # ground_truth as a string (KnowledgeMath's schema) reads the same
    record, _ = to_record(CATALOG["financemath"], financemath_row(ground_truth="1,234.5"))
    assert record["answer"] == "1234.5"


def test_sujet_qa_pairs_are_parsed_never_evaluated(tmp_path):
    marker = tmp_path / "evaluated"
    row = {"image": None, "qa_pairs": f"__import__('pathlib').Path({str(marker)!r}).touch()"}
    assert to_record(CATALOG["sujet_qa"], row) == (None, "empty_text")
    assert not marker.exists()


def test_harmonize_rows_counts_drops_per_reason():
    spec = CATALOG["mmlu_pro"]
    rows = [PRO_ROW, {**PRO_ROW, "answer": "K"}, {**PRO_ROW, "options": []}, {**PRO_ROW, "answer": "A"}]
    dropped = {}
    records, texts = harmonize_rows(spec, rows, "train", dropped)
    assert [r["answer"] for r in records] == ["J", "A"]
    assert dropped == {"train/bad_label": 1, "train/bad_options": 1}
    assert texts == [PRO_QUESTION] * 4  # a dropped row still has pretraining text


# ---------------------------------------------------------------------------------------- prompt overrides

def test_prompt_override_is_used():
    spec = CATALOG["imdb"]
    record, reason = to_record(spec, {"text": "Great fun.", "label": 1}, template="Review: {text}\nAnswer:")
    assert reason is None
    assert record["prompt"] == "Review: Great fun.\nAnswer:"
    assert (record["completion"], record["answer"], record["labels"]) == (" positive", "positive",
                                                                          ["negative", "positive"])


def test_prompt_override_can_use_derived_fields():
    record, _ = to_record(CATALOG["mmlu"], MMLU_ROW, template="Q: {question}\n{choices_text}\nLetter:")
    assert record["prompt"] == f"Q: {MMLU_QUESTION}\nA. 0\nB. 4\nC. 2\nD. 6\nLetter:"
    record, _ = to_record(CATALOG["sujet_qa"], sujet_qa_rows("sujet_qa")[0].row, template="{question} ->")
    assert record["prompt"] == "What is the total revenue reported for 2020? ->"


def test_prompt_override_with_an_unknown_field_names_the_params_key():
    with pytest.raises(LancyError) as caught:
        to_record(CATALOG["imdb"], {"text": "Great fun.", "label": 1}, template="Review: {review}\nAnswer:")
    message = str(caught.value)
    assert "`prompts.imdb`" in message
    assert "{review}" in message
    assert "text" in message  # the fields the rows do have


def test_named_template_override_with_missing_field_names_the_params_key():
    with pytest.raises(LancyError, match=r"prompts\.twitter_fin"):
        to_record(CATALOG["twitter_fin"], {"text": "stocks up", "label": 1}, template="passthrough")


def test_harmonize_rows_passes_the_override():
    records, _ = harmonize_rows(CATALOG["imdb"], [{"text": "Great fun.", "label": 1}], "train", {},
                                template="{text} =>")
    assert records[0]["prompt"] == "Great fun. =>"


@pytest.mark.parametrize("template", ["Review: {}\nAnswer:", "Review: {text\nAnswer:"])
def test_malformed_prompt_override_is_a_user_error(template):
    with pytest.raises(LancyError, match=r"prompts\.imdb"):
        to_record(CATALOG["imdb"], {"text": "Great fun.", "label": 1}, template=template)


def test_fiqa_sa_nan_score_is_dropped():
    assert to_record(CATALOG["fiqa_sa"], fiqa_sa_row(float("nan"))) == (None, "bad_label")
