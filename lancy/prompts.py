"""Prompt templates, as in the original system for the classification tasks.

A template is filled with a row's fields (its raw columns plus what the catalog entry's `prepare`
derives, e.g. `{choices_text}` for multiple choice). The prompt ends right before the answer: the model's
target is a space and the label word, letter or reference text. Any template can be overridden from
params (`prompts.<dataset>: "...{text}..."`).
"""

TEMPLATES = {
    "imdb": (
        "Classify the sentiment of this movie review as either 'positive' or 'negative'.\n\n"
        "Review: {text}\nSentiment:"
    ),
    "sst2": (
        "Classify the sentiment of this sentence as either 'positive' or 'negative'.\n\n"
        "Sentence: {sentence}\nSentiment:"
    ),
    "cola": "Determine if this sentence is grammatically acceptable or unacceptable.\n\nSentence: {sentence}\nGrammar:",
    "mrpc": (
        "Determine if these two sentences are equivalent or not_equivalent in meaning.\n\n"
        "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nRelation:"
    ),
    "qqp": (
        "Determine if these two questions are duplicate or not_duplicate.\n\n"
        "Question 1: {question1}\nQuestion 2: {question2}\nRelation:"
    ),
    "mnli": (
        "Determine if the premise entails the hypothesis: entailment, neutral or contradiction.\n\n"
        "Premise: {premise}\nHypothesis: {hypothesis}\nRelation:"
    ),
    "qnli": (
        "Determine if the sentence answers the question: entailment or not_entailment.\n\n"
        "Question: {question}\nSentence: {sentence}\nRelation:"
    ),
    "rte": (
        "Determine if the first sentence entails the second: entailment or not_entailment.\n\n"
        "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nRelation:"
    ),
    "financial_sentiment": (
        "Classify the sentiment of this financial sentence as 'negative', 'neutral' or 'positive'.\n\n"
        "Sentence: {sentence}\nSentiment:"
    ),
    "twitter_fin": (
        "Classify the sentiment of this financial tweet as 'bearish', 'bullish' or 'neutral'.\n\n"
        "Tweet: {text}\nSentiment:"
    ),
    "mmlu": (
        "Answer the multiple-choice question with the letter of the correct option.\n\n"
        "{question}\n{choices_text}\nAnswer:"
    ),
    "gsm8k": (
        "Solve this math problem step by step. Give the final number after '####'.\n\n"
        "Question: {question}\nAnswer:"
    ),
    "financemath": (
        "Solve this financial math problem with a Python function, then give the final number after '####'.\n\n"
        "Question: {question}{tables}\nAnswer:"
    ),
    "dm_math": "Answer the math question.\n\nQuestion: {question}\nAnswer:",
    "fiqa": "Answer the financial question.\n\nQuestion: {question}\nAnswer:",
    "financial_qa_10k": (
        "Answer the question about a company's 10-K filing from the excerpt.\n\n"
        "Excerpt: {context}\nQuestion: {question}\nAnswer:"
    ),
    "alpaca": (
        "Below is an instruction. Write a response that completes it.\n\n"
        "Instruction: {instruction}{context}\nResponse:"
    ),
    "sujet_qa": "Answer the question about a financial document.\n\nQuestion: {question}\nAnswer:",
    "bigcodebench": "{instruct_prompt}\n\nSolution:",
    "passthrough": "{input}",
}


def render(template: str, row: dict) -> str:
    """Fill a template (a name in TEMPLATES or a literal template) with a row's fields."""
    return TEMPLATES.get(template, template).format(**row)
