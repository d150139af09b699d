"""Harmonizing: every dataset's raw rows become one record shape.

Task record:   {"source", "task", "prompt", "completion", "answer"}
  prompt      the filled template; completion the target text (" positive", " <worked answer>");
  answer      the reference the rewards and evaluation compare against (label word or final number).
Corpus text:   plain text for pretraining, from the entry's text columns.

A row that cannot be harmonized without guessing is dropped with a reason (counted in metrics/mix.json),
never mislabeled.
"""
from lancy.answers import final_number
from lancy.catalog import DatasetSpec
from lancy.errors import LancyError
from lancy.prompts import render


def check_columns(spec: DatasetSpec, row: dict, where: str) -> None:
    missing = [column for column in spec.columns if column not in row]
    if missing:
        raise LancyError(
            f"dataset {spec.name} ({where}) has no column `{missing[0]}`; "
            f"its catalog entry expects columns: {', '.join(spec.columns)}"
        )


def to_record(spec: DatasetSpec, row: dict) -> tuple[dict | None, str | None]:
    """(record, None), or (None, reason) when the row must be dropped."""
    texts = [row[c] for c in spec.columns if c not in ("label", "idx")]
    if any(not isinstance(t, str) or not t.strip() for t in texts):
        return None, "empty_text"
    if spec.task == "classification":
        label = row["label"]
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(spec.labels):
            return None, "bad_label"
        answer = spec.labels[label]
        completion = " " + answer
    elif spec.task == "math":
        worked = row[spec.answer_column]
        answer = final_number(worked) if "####" in worked else None
        if answer is None:
            return None, "unparseable_answer"
        completion = " " + worked.strip()
    else:
        raise ValueError(f"{spec.name} is a {spec.task} dataset: it has text, not task records")
    record = {"source": spec.name, "task": spec.task, "prompt": render(spec.prompt, row)}
    record.update(completion=completion, answer=answer)
    return record, None


def to_text(spec: DatasetSpec, row: dict) -> str | None:
    """The row's pretraining text, or None when it has none (e.g. a blank wikitext line)."""
    parts = [row[c].strip() for c in spec.text_columns if isinstance(row.get(c), str) and row[c].strip()]
    return "\n".join(parts) if parts else None


def harmonize_rows(spec: DatasetSpec, rows: list[dict], split: str, dropped: dict) -> tuple[list[dict], list[str]]:
    """(task records, pretraining texts) of one split's raw rows; `dropped` counts rows left out, by reason."""
    records, texts = [], []
    for row in rows:
        check_columns(spec, row, f"{split} split")
        text = to_text(spec, row)
        if text is not None:
            texts.append(text)
        if spec.task != "corpus":
            record, reason = to_record(spec, row)
            if record is None:
                key = f"{split}/{reason}"
                dropped[key] = dropped.get(key, 0) + 1
            else:
                records.append(record)
    return records, texts
