"""Prompt templates for generative classification and math, as in the original system.

A template is filled with the dataset's raw columns (`{text}`, `{sentence1}`, ...). The model's target
(the completion) is a space and the label word, or the worked answer for math; the prompt ends right
before it, so what the model writes is exactly the label.
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
    "mrpc": (
        "Determine if these two sentences are equivalent or not_equivalent in meaning.\n\n"
        "Sentence 1: {sentence1}\nSentence 2: {sentence2}\nRelation:"
    ),
    "gsm8k": (
        "Solve this math problem step by step. Give the final number after '####'.\n\n"
        "Question: {question}\nAnswer:"
    ),
}


def render(template: str, row: dict) -> str:
    """Fill a template (a name in TEMPLATES or a literal template) with a row's columns."""
    return TEMPLATES.get(template, template).format(**row)
