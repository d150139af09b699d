"""Reading answers out of generated text: label words and final numbers.

Evaluation and the GRPO rewards both use these, so a completion is judged the same way in both.
"""
import re

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_label(text: str, labels: tuple[str, ...]) -> str | None:
    """The label word the text starts with, or None if the first word is not one of `labels`."""
    words = text.strip().split()
    if not words:
        return None
    word = words[0].strip(".,;:!?\"'").lower()
    return word if word in labels else None


def normalize_number(text: str) -> str | None:
    """'1,234.50' -> '1234.5', '$7' -> '7'; None when the text holds no number."""
    match = _NUMBER.search(text.replace("$", ""))
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
