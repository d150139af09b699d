"""Reading answers out of generated text: label words, option letters, final numbers, free text.

Evaluation and the GRPO rewards both use these, so a completion is judged the same way in both.
"""
import ast
import re
from collections import Counter

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
LETTERS = "ABCDEFGHIJ"


def parse_label(text: str, labels: list[str] | tuple[str, ...]) -> str | None:
    """The label (word or option letter) the text starts with, case-insensitively; None if it is none of them."""
    words = text.strip().split()
    if not words:
        return None
    word = words[0].strip(".,;:!?\"'()[]").lower()
    return next((label for label in labels if label.lower() == word), None)


def normalize_number(text: str) -> str | None:
    """'1,234.50' -> '1234.5', '$7' -> '7'; None when the text holds no number."""
    match = _NUMBER.search(str(text).replace("$", ""))
    if match is None:
        return None
    value = float(match.group().replace(",", ""))
    return str(int(value)) if value.is_integer() else repr(value)


def final_number(text: str) -> str | None:
    """The final answer of a worked solution: the number after '####' if present, else the last number."""
    if "####" in text:
        return normalize_number(text.split("####", 1)[1])
    numbers = _NUMBER.findall(text.replace("$", ""))
    return normalize_number(numbers[-1]) if numbers else None


def math_correct(text: str, answer: str) -> bool:
    """Whether a completion reaches the reference answer.

    With '####' in the completion, the number after it counts. Otherwise, for a numeric reference, a first
    line that is just a number counts (short-answer datasets), else the last number of the text; any other
    reference must equal the first line exactly.
    """
    if "####" in text:
        return final_number(text) == answer
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    if normalize_number(answer) == answer:
        if _NUMBER.fullmatch(first.replace("$", "")):
            return normalize_number(first) == answer
        return final_number(text) == answer
    return first == answer.strip()


def token_f1(text: str, reference: str) -> float:
    """SQuAD-style token F1 between a generated answer and the reference (lower-cased, punctuation dropped)."""
    tokens = [re.sub(r"[^\w]", "", t) for t in text.lower().split()]
    ref = [re.sub(r"[^\w]", "", t) for t in reference.lower().split()]
    tokens, ref = [t for t in tokens if t], [t for t in ref if t]
    common = sum((Counter(tokens) & Counter(ref)).values())
    if not tokens or not ref or not common:
        return float(tokens == ref)
    precision, recall = common / len(tokens), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def syntax_valid(code: str) -> bool:
    """Whether the text parses as Python (compiling only: nothing is executed)."""
    try:
        compile(code.strip("\n"), "<completion>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def substantive_code(code: str) -> bool:
    """Whether the text is Python that compiles and does something: not empty, and not only imports, `pass`,
    `...`, docstrings and comments, or functions and classes whose bodies are only that. Such code earns no
    code reward, even when it compiles."""
    if not syntax_valid(code):
        return False
    try:
        body = ast.parse(code.strip("\n")).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(_does_something(node) for node in body)


def _does_something(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return any(_does_something(child) for child in node.body)
    constant = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)  # a docstring or `...`
    return not (constant or isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)))
