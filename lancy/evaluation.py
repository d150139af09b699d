"""Evaluation: greedy generation parsed into answers, and perplexity on held-out text.

Classification and multiple choice: the generated text must start with one of the row's label words or
option letters; anything else is invalid and counts as wrong. Math: exact match of the final number (or of
the exact answer). QA and instructions: token F1. Code: pass@1, the share of rows (those with unit tests)
whose greedy completion passes all of them in lancy.sandbox, and the share that compiles and does something
(empty or `pass`-only code does not count). Corpus text: perplexity.

Every task dataset also gets its answer loss: the mean negative log-likelihood per token of the reference
completion (and EOS) given the prompt, teacher-forced, as SFT trains it. It needs no generation, and it moves
smoothly with training where an accuracy jumps: the mixture search's default target (lancy.search).
"""
import hashlib
import math

import torch
import torch.nn.functional as F

from lancy.answers import math_correct, parse_label, substantive_code, token_f1
from lancy.models import labelled_hidden_states, plain_lm_head
from lancy.packing import IGNORE, encode_sft, fit_prompt, seq2seq_examples
from lancy.sandbox import run_tests


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions of prompts, batched with left padding.

    A prompt longer than the model's context (less the new tokens) loses its middle, as in training.
    """
    tokenizer.padding_side = "left"
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    # a decoder's context holds the prompt and the new tokens; an encoder's holds the prompt alone
    limit = context and (context if model.config.is_encoder_decoder else context - max_new_tokens)
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    encoded = [fit_prompt(ids, limit) if limit else ids for ids in encoded]
    order, outputs = longest_first(encoded), [None] * len(encoded)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt").to(model.device)
        generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        if not model.config.is_encoder_decoder:  # a decoder's output starts with its prompt
            generated = generated[:, batch["input_ids"].shape[1]:]
        for i, text in zip(rows, tokenizer.batch_decode(generated, skip_special_tokens=True), strict=True):
            outputs[i] = text
    return outputs


def longest_first(sequences: list) -> list[int]:
    """Indices of sequences, longest first (ties in their order): batches of similar lengths pad little."""
    return sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))


LOGITS_BUDGET = 2**27  # logits (fp32 numbers) one loss forward pass may hold: 512 MiB, whatever the vocabulary


def _rows_per_pass(model, length: int, batch_size: int) -> int:
    """At most batch_size rows of `length` tokens, fewer when their logits would pass LOGITS_BUDGET (a 150k-token
    vocabulary: 3 rows of 256 tokens)."""
    return max(1, min(batch_size, LOGITS_BUDGET // max(1, length * model.config.get_text_config().vocab_size)))


def _context(model) -> int:
    """Tokens a forward pass may hold: the model's positions, at most 1024 (as for perplexity)."""
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return min(context or 1024, 1024)


def _token_losses(model, input_ids, attention_mask, labels) -> tuple[list[float], list[int]]:
    """Each row's summed cross-entropy and token count over its labels that are not IGNORE. From the logits, not
    the model's `loss`: a mixture of experts adds its router's balancing loss to that one. Where the head is a
    plain linear map (lancy.models.plain_lm_head), only the labelled positions go through it: an answer's few
    tokens, not its prompt's."""
    if model.config.is_encoder_decoder:  # labels give the decoder its (shifted) inputs; logits align with them
        logits = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    elif plain_lm_head(model):
        rows = (labels[:, 1:] != IGNORE).nonzero()[:, 0]  # the row of each labelled position, in the head's order
        hidden, targets = labelled_hidden_states(model, labels, input_ids=input_ids, attention_mask=attention_mask)
        losses = F.cross_entropy(model.get_output_embeddings()(hidden).float(), targets, reduction="none")
        sums = torch.zeros(len(labels), device=losses.device).index_add_(0, rows, losses)
        return sums.tolist(), (labels[:, 1:] != IGNORE).sum(1).tolist()
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        labels = labels[:, 1:]
    losses = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    return losses.sum(1).tolist(), (labels != IGNORE).sum(1).tolist()


@torch.no_grad()
def answer_losses(model, tokenizer, records: list[dict], batch_size: int) -> tuple[list[float | None], list[int]]:
    """Each row's summed loss of its reference completion + EOS given its prompt (None for a row without a
    completion) and the number of those tokens, cut the way SFT examples are (lancy.packing) to the model's
    context."""
    scored = [i for i, r in enumerate(records) if r.get("completion")]
    nll, tokens = [None] * len(records), [0] * len(records)
    if not scored:
        return nll, tokens
    make = seq2seq_examples if model.config.is_encoder_decoder else encode_sft
    examples = make({"prompt": [records[i]["prompt"] for i in scored],
                     "completion": [records[i]["completion"] for i in scored]}, tokenizer, _context(model))
    tokenizer.padding_side = "right"
    step = _rows_per_pass(model, max(map(len, examples["input_ids"] + examples["labels"])), batch_size)
    order = longest_first([a + b for a, b in zip(examples["input_ids"], examples["labels"], strict=True)])
    for start in range(0, len(order), step):
        rows = order[start : start + step]
        batch = tokenizer.pad({"input_ids": [examples["input_ids"][j] for j in rows]}, return_tensors="pt")
        labels = [examples["labels"][j] for j in rows]
        width = max(map(len, labels))
        labels = torch.tensor([row + [IGNORE] * (width - len(row)) for row in labels], device=model.device)
        batch = batch.to(model.device)
        for j, loss, count in zip(rows, *_token_losses(model, batch["input_ids"], batch["attention_mask"], labels),
                                  strict=True):
            nll[scored[j]], tokens[scored[j]] = loss, count
    return nll, tokens


def answer_loss(model, tokenizer, records: list[dict], batch_size: int) -> float | None:
    """Mean loss per token of the rows' reference completions + EOS given their prompts (answer_losses); None
    when no row has a completion."""
    nll, tokens = answer_losses(model, tokenizer, records, batch_size)
    return sum(x for x in nll if x is not None) / sum(tokens) if sum(tokens) else None


def label_tokens(tokenizer, labels: list[str]) -> int:
    """Tokens needed to write the longest label word (with its leading space) and EOS."""
    return max(len(tokenizer(" " + label, add_special_tokens=False)["input_ids"]) for label in labels) + 1


METRIC = {"classification": "accuracy", "multiple_choice": "accuracy", "math": "exact_match", "code": "pass_at_1"}


def metric_of(task: str) -> str:
    """A task kind's headline metric (one of SCORES): accuracy, exact match, pass@1, or token F1 (QA, instructions)."""
    return METRIC.get(task, "token_f1")


def answer_rows(model, tokenizer, task: str, records: list[dict], max_new_tokens: int, batch_size: int) -> dict:
    """Per row, columns: the greedy `generated` text, its `score` (1 or 0, right or wrong; token F1 for QA; None
    for a code row without unit tests) and whether it is `invalid` (no label word or option letter; code that
    does nothing; None for tasks without that notion)."""
    prompts = [r["prompt"] for r in records]
    if not records:
        return {"generated": [], "score": [], "invalid": []}
    if task in ("classification", "multiple_choice"):
        length = label_tokens(tokenizer, sorted({label for r in records for label in r["labels"]}))
        outputs = generate(model, tokenizer, prompts, length, batch_size)
        predictions = [parse_label(o, r["labels"]) for o, r in zip(outputs, records, strict=True)]
        return {"generated": outputs, "invalid": [p is None for p in predictions],
                "score": [float(p == r["answer"]) for p, r in zip(predictions, records, strict=True)]}
    outputs = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    pairs = list(zip(outputs, records, strict=True))
    if task == "math":
        return {"generated": outputs, "invalid": [None] * len(outputs),
                "score": [float(math_correct(o, r["answer"])) for o, r in pairs]}
    if task == "code":
        substantive = [substantive_code(o) for o in outputs]
        return {"generated": outputs, "invalid": [not ok for ok in substantive],
                "score": [float(ok and run_tests(o.strip("\n"), r["tests"]).all_passed) if r.get("tests") else None
                          for (o, r), ok in zip(pairs, substantive, strict=True)]}
    return {"generated": outputs, "invalid": [None] * len(outputs),
            "score": [token_f1(o, r["answer"]) for o, r in pairs]}


def summarize(task: str, rows: dict) -> dict:
    """A dataset's metrics from its per-row columns (answer_rows, answer_losses): the headline metric with its
    standard error over rows (`<metric>_se`, lancy.stats), the invalid rate (syntax_valid, its complement, for
    code) and the rows generated (`rows`); the answer loss per token with its standard error, and the rows scored
    for it (`loss_rows`)."""
    from lancy.stats import ratio, standard_error

    result = {}
    if "score" in rows:
        key, scores = metric_of(task), [s for s in rows["score"] if s is not None]
        result = {key: ratio(scores) if scores else None, f"{key}_se": _finite(standard_error(scores)),
                  "rows": len(rows["score"])}
        invalid = [float(i) for i in rows["invalid"] if i is not None]
        if task == "code":
            result["syntax_valid"] = 1 - ratio(invalid) if invalid else 0.0
        elif task in ("classification", "multiple_choice"):
            result["invalid_rate"] = ratio(invalid) if invalid else 0.0
    if "nll" in rows:
        scored = [(x, t) for x, t in zip(rows["nll"], rows["tokens"], strict=True) if x is not None]
        nll, tokens = (list(c) for c in zip(*scored, strict=True)) if scored else ([], [])
        result.update(answer_loss=ratio(nll, tokens) if scored else None,
                      answer_loss_se=_finite(standard_error(nll, tokens)), loss_rows=len(scored))
    return result


def _finite(value: float) -> float | None:
    """A standard error for the metrics' JSON: None where it is undefined (fewer than two rows)."""
    return value if value is not None and math.isfinite(value) else None


def evaluate_tasks(model, tokenizer, task: str, records: list[dict], max_new_tokens: int, batch_size: int) -> dict:
    """The dataset's metrics from its generated answers (answer_rows, summarize): label accuracy and invalid rate,
    exact match, token F1, pass@1 and syntax_valid, each headline with its standard error."""
    if not records:
        return {"rows": 0}
    return summarize(task, answer_rows(model, tokenizer, task, records, max_new_tokens, batch_size))


@torch.no_grad()
def corpus_windows(model, tokenizer, texts: list[str], batch_size: int) -> dict:
    """Texts joined with EOS, cut into full windows of the model's context (at most 1024 tokens); per window, a
    stable `id` (a hash of its tokens: the same window in every run with the same tokenizer), its summed `nll`
    and the `tokens` it predicts. Empty for an encoder-decoder (its loss needs a source and a target)."""
    rows = {"id": [], "nll": [], "tokens": []}
    if model.config.is_encoder_decoder:
        return rows
    window = _context(model)
    ids = [t for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for t in [*ids, tokenizer.eos_token_id]]
    if len(ids) < 2:
        return rows
    n = max(1, len(ids) // window)
    windows = torch.tensor(ids[: n * window]).view(n, -1)
    for batch in windows.split(_rows_per_pass(model, window, batch_size)):
        rows["id"] += [hashlib.blake2b(row.numpy().tobytes(), digest_size=8).hexdigest() for row in batch]
        batch = batch.to(model.device)
        nll, tokens = _token_losses(model, batch, torch.ones_like(batch), batch)
        rows["nll"] += nll
        rows["tokens"] += tokens
    return rows


def corpus_summary(rows: dict) -> dict:
    """Perplexity (exp of the mean loss per token) over the windows with its standard error (the delta method),
    and the tokens the windows hold."""
    from lancy.stats import ratio, standard_error

    if not rows["nll"]:
        return {"perplexity": None, "tokens": 0}
    loss, se = ratio(rows["nll"], rows["tokens"]), standard_error(rows["nll"], rows["tokens"])
    return {"perplexity": math.exp(loss), "perplexity_se": _finite(math.exp(loss) * se),
            "tokens": sum(rows["tokens"]) + len(rows["tokens"])}


def perplexity(model, tokenizer, texts: list[str], batch_size: int) -> dict:
    """Perplexity of texts joined with EOS, over full windows of the model's context (corpus_windows)."""
    return corpus_summary(corpus_windows(model, tokenizer, texts, batch_size))


SCORES = (*dict.fromkeys(METRIC.values()), "token_f1")  # each task kind's headline metric, in [0, 1]


def headline(result: dict) -> str | None:
    """The key of a dataset result's headline metric (SCORES), or None (a corpus, or no row with tests)."""
    return next((key for key in SCORES if result.get(key) is not None), None)


def compact(results: dict) -> dict:
    """A model's top-level DVC metrics (what `dvc exp show` and `dvc metrics diff` list): per dataset its
    headline score and answer loss, per corpus its perplexity. Standard errors, row counts and invalid rates
    stay in the details file (`dvc metrics diff --targets metrics/eval/<model>_details.json`)."""
    return {name: {key: result[key] for key in (headline(result), "answer_loss", "perplexity")
                   if key is not None and result.get(key) is not None}
            for name, result in sorted(results.items())}


def scores(results: dict) -> list[dict]:
    """One row per dataset that has a [0, 1] headline metric (perplexity has its own scale and stays out): the
    data of the per-dataset bar plots that `dvc plots diff` draws across experiments."""
    return [{"dataset": name, "metric": key, "score": result[key]}
            for name, result in sorted(results.items()) if (key := headline(result))]
