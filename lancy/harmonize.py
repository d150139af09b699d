"""Harmonizing: every dataset's raw rows become one record shape.

Task record:   {"source", "task", "prompt", "completion", "answer", "labels", "tests"}
  prompt      the filled template; completion the target text (" positive", " B", " <worked answer>");
  answer      the reference that rewards and evaluation compare against (label word, letter, final
              number, reference text or code);
  labels      the valid answers of a classification or multiple-choice row (empty otherwise);
  tests       a code row's unit tests (unittest code that calls the solution), run against a completion in
              lancy.sandbox; "" otherwise. Every record has every key: a GRPO dataset built from mixed
              sources takes its columns from the first row.
Corpus text:   plain text for pretraining, from the entry's text columns.

A row that cannot be harmonized without guessing is dropped with a reason (counted in metrics/mix.json),
never mislabeled.

The mix stage harmonizes Arrow tables with `harmonize_batch` (a batched `Dataset.map` function): one output row
per raw row, holding its record (or why it was dropped), its pretraining text, their sizes in characters, and
whether it holds held-out text (lancy.mixing).
"""
from lancy.answers import LETTERS, final_number
from lancy.catalog import DatasetSpec, check_columns, filled, to_text
from lancy.errors import LancyError
from lancy.mixing import match_keys, row_input
from lancy.prompts import render

RECORD = ("source", "task", "prompt", "completion", "answer", "labels", "tests")


def _target(spec: DatasetSpec, fields: dict) -> tuple[str | None, str | None, str | None]:
    """(completion, answer, drop reason) of one row's fields."""
    if spec.task == "classification":
        label, labels = fields.get(spec.label_column), fields.get("labels") or spec.labels
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(labels):
            return None, None, "bad_label"
        return " " + labels[label], labels[label], None
    if spec.task == "multiple_choice":
        options, answer = fields[spec.choices], fields[spec.label_column]
        if not options or len(options) > len(LETTERS) or not all(filled(str(o)) for o in options):
            return None, None, "bad_options"
        in_range = isinstance(answer, int) and 0 <= answer < len(options)
        letter = LETTERS[answer] if in_range else str(answer).strip()
        if letter not in LETTERS[: len(options)]:
            return None, None, "bad_label"
        return " " + letter, letter, None
    text = str(fields[spec.target]).strip()
    if not text:
        return None, None, "empty_text"
    if spec.task == "math":
        answer = final_number(text) if spec.answer_after and spec.answer_after in text else None
        if spec.answer_after and answer is None:
            return None, None, "unparseable_answer"
        return " " + text, answer or text, None
    if spec.task == "code":  # code starts on its own line: a leading space would be an indentation error
        return "\n" + text, text, None
    return " " + text, text, None


def to_record(spec: DatasetSpec, row: dict, template: str | None = None) -> tuple[dict | None, str | None]:
    """(record, None), or (None, reason) when the row must be dropped. `template` overrides the entry's."""
    if spec.task == "corpus":
        raise ValueError(f"{spec.name} is a corpus: it has text, not task records")
    fields = {**row, **(spec.prepare(row) if spec.prepare else {})}
    if not all(filled(fields.get(c)) for c in spec.text_columns):
        return None, "empty_text"
    completion, answer, reason = _target(spec, fields)
    if reason:
        return None, reason
    labels = fields.get("labels") or spec.labels
    if spec.task == "multiple_choice":
        options = fields[spec.choices]
        labels = LETTERS[: len(options)]
        lines = [f"{letter}. {option}" for letter, option in zip(labels, options, strict=True)]
        fields["choices_text"] = "\n".join(lines)
    try:
        prompt = render(template or spec.prompt, fields)
    except KeyError as error:
        raise LancyError(
            f"the prompt template of {spec.name} uses {{{error.args[0]}}}, which its rows do not have; "
            f"fields: {', '.join(sorted(fields))} (params key `prompts.{spec.name}`)"
        ) from None
    except (IndexError, ValueError) as error:
        raise LancyError(
            f"the prompt template of {spec.name} is malformed ({error}); name each field in braces, "
            f"e.g. {{text}} (params key `prompts.{spec.name}`)"
        ) from None
    record = {"source": spec.name, "task": spec.task, "prompt": prompt}
    tests = fields.get(spec.tests) if spec.tests else None
    record.update(completion=completion, answer=answer, labels=list(labels), tests=tests if filled(tests) else "")
    return record, None


def harmonize_rows(
    spec: DatasetSpec, rows: list[dict], split: str, dropped: dict, template: str | None = None
) -> tuple[list[dict], list[str]]:
    """(task records, pretraining texts) of one split's raw rows; `dropped` counts rows left out, by reason."""
    records, texts = [], []
    for row in rows:
        check_columns(spec, row, f"{split} split")
        text = to_text(spec, row)
        if text is not None:
            texts.append(text)
        if spec.task != "corpus":
            record, reason = to_record(spec, row, template)
            if record is None:
                key = f"{split}/{reason}"
                dropped[key] = dropped.get(key, 0) + 1
            else:
                records.append(record)
    return records, texts


def harmonized_features():
    """The columns `harmonize_batch` writes: a record's (None when dropped) and the bookkeeping ones."""
    from datasets import Features, List, Value

    text = Value("string")
    return Features({
        **{key: text for key in RECORD if key != "labels"}, "labels": List(text),
        "text": text, "record_chars": Value("int64"), "text_chars": Value("int64"),
        "dropped": text, "keys": List(Value("binary")),
    })


def harmonize_batch(batch: dict, spec: DatasetSpec, split: str, template: str | None = None) -> dict:
    """Batched-map form of `harmonize_rows`: per raw row its source, task and record fields (None with the
    reason in `dropped` when the row cannot be harmonized, or for a corpus), `text` (pretraining text or None),
    `record_chars` and `text_chars`, and `keys`: the hashes its input and text are matched by against held-out
    text (lancy.mixing.match_keys)."""
    rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
    if rows:
        check_columns(spec, rows[0], f"{split} split")
    out = {key: [] for key in (*RECORD, "text", "record_chars", "text_chars", "dropped", "keys")}
    for row in rows:
        text = to_text(spec, row)
        record, reason = to_record(spec, row, template) if spec.task != "corpus" else (None, None)
        for key in RECORD:
            out[key].append(record[key] if record else None)
        out["source"][-1], out["task"][-1] = spec.name, spec.task
        out["text"].append(text)
        out["record_chars"].append(len(record["prompt"]) + len(record["completion"]) if record else 0)
        out["text_chars"].append(len(text) if text is not None else 0)
        out["dropped"].append(reason)
        out["keys"].append(match_keys(row_input(spec, row), text))
    return out
