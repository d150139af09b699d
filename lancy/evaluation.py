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
    outputs = []
    for start in range(0, len(encoded), batch_size):
        batch = tokenizer.pad({"input_ids": encoded[start : start + batch_size]}, return_tensors="pt").to(model.device)
        generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        if not model.config.is_encoder_decoder:  # a decoder's output starts with its prompt
            generated = generated[:, batch["input_ids"].shape[1]:]
        outputs += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return outputs


LOGITS_BUDGET = 2**27  # logits (fp32 numbers) one loss forward pass may hold: 512 MiB, whatever the vocabulary


def _rows_per_pass(model, length: int, batch_size: int) -> int:
    """At most batch_size rows of `length` tokens, fewer when their logits would pass LOGITS_BUDGET (a 150k-token
    vocabulary: 3 rows of 256 tokens)."""
    return max(1, min(batch_size, LOGITS_BUDGET // max(1, length * model.config.get_text_config().vocab_size)))


def _context(model) -> int:
    """Tokens a forward pass may hold: the model's positions, at most 1024 (as for perplexity)."""
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return min(context or 1024, 1024)


def _token_losses(model, input_ids, attention_mask, labels) -> tuple[float, int]:
    """Summed cross-entropy and token count over the labels that are not IGNORE. From the logits, not the model's
    `loss`: a mixture of experts adds its router's balancing loss to that one. Where the head is a plain linear
    map (lancy.models.plain_lm_head), only the labelled positions go through it: an answer's few tokens, not its
    prompt's."""
    if model.config.is_encoder_decoder:  # labels give the decoder its (shifted) inputs; logits align with them
        logits = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    elif plain_lm_head(model):
        hidden, labels = labelled_hidden_states(model, labels, input_ids=input_ids, attention_mask=attention_mask)
        logits = model.get_output_embeddings()(hidden)
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        labels = labels[:, 1:]
    loss = F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), ignore_index=IGNORE, reduction="sum")
    return loss.item(), int((labels != IGNORE).sum())


@torch.no_grad()
def answer_loss(model, tokenizer, records: list[dict], batch_size: int) -> float | None:
    """Mean loss per token of the rows' reference completions + EOS given their prompts, cut the way SFT examples
    are (lancy.packing) to the model's context; None when no row has a completion."""
    records = [r for r in records if r.get("completion")]
    if not records:
        return None
    make = seq2seq_examples if model.config.is_encoder_decoder else encode_sft
    examples = make({"prompt": [r["prompt"] for r in records], "completion": [r["completion"] for r in records]},
                    tokenizer, _context(model))
    tokenizer.padding_side = "right"
    step = _rows_per_pass(model, max(map(len, examples["input_ids"] + examples["labels"])), batch_size)
    total, count = 0.0, 0
    for start in range(0, len(records), step):
        ids, labels = (examples[key][start : start + step] for key in ("input_ids", "labels"))
        batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(model.device)
        width = max(map(len, labels))
        labels = torch.tensor([row + [IGNORE] * (width - len(row)) for row in labels], device=model.device)
        loss, tokens = _token_losses(model, batch["input_ids"], batch["attention_mask"], labels)
        total, count = total + loss, count + tokens
    return total / max(1, count)


def label_tokens(tokenizer, labels: list[str]) -> int:
    """Tokens needed to write the longest label word (with its leading space) and EOS."""
    return max(len(tokenizer(" " + label, add_special_tokens=False)["input_ids"]) for label in labels) + 1


def evaluate_tasks(model, tokenizer, task: str, records: list[dict], max_new_tokens: int, batch_size: int) -> dict:
    """The dataset's metric from its task kind: label accuracy and invalid rate, exact match, token F1, pass@1."""
    prompts = [r["prompt"] for r in records]
    if not records:
        return {"rows": 0}
    if task in ("classification", "multiple_choice"):
        length = label_tokens(tokenizer, sorted({label for r in records for label in r["labels"]}))
        outputs = generate(model, tokenizer, prompts, length, batch_size)
        predictions = [parse_label(o, r["labels"]) for o, r in zip(outputs, records, strict=True)]
        return {
            "accuracy": _mean(p == r["answer"] for p, r in zip(predictions, records, strict=True)),
            "invalid_rate": _mean(p is None for p in predictions),
            "rows": len(records),
        }
    outputs = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    pairs = list(zip(outputs, records, strict=True))
    if task == "math":
        return {"exact_match": _mean(math_correct(o, r["answer"]) for o, r in pairs), "rows": len(records)}
    if task == "code":
        substantive = [substantive_code(o) for o, _ in pairs]
        tested = [(o, r["tests"], ok) for (o, r), ok in zip(pairs, substantive, strict=True) if r.get("tests")]
        passed = [ok and run_tests(o.strip("\n"), tests).all_passed for o, tests, ok in tested]
        return {"pass_at_1": _mean(passed) if tested else None,  # None when no row has tests
                "syntax_valid": _mean(substantive), "rows": len(records)}
    return {"token_f1": _mean(token_f1(o, r["answer"]) for o, r in pairs), "rows": len(records)}


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], batch_size: int) -> dict:
    """Perplexity of texts joined with EOS, over full windows of the model's context (at most 1024 tokens)."""
    if model.config.is_encoder_decoder:  # its loss needs a source and a target: no plain-text perplexity
        return {"perplexity": None, "tokens": 0}
    window = _context(model)
    ids = [t for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for t in [*ids, tokenizer.eos_token_id]]
    if len(ids) < 2:
        return {"perplexity": None, "tokens": 0}
    n = max(1, len(ids) // window)
    windows = torch.tensor(ids[: n * window]).view(n, -1)
    total, count = 0.0, 0
    for batch in windows.split(_rows_per_pass(model, window, batch_size)):
        batch = batch.to(model.device)
        loss, tokens = _token_losses(model, batch, torch.ones_like(batch), batch)
        total, count = total + loss, count + tokens
    return {"perplexity": math.exp(total / count), "tokens": int(windows.numel())}


SCORES = ("accuracy", "exact_match", "pass_at_1", "token_f1")  # each task kind's headline metric, in [0, 1]


def headline(result: dict) -> str | None:
    """The key of a dataset result's headline metric (SCORES), or None (a corpus, or no row with tests)."""
    return next((key for key in SCORES if result.get(key) is not None), None)


def scores(results: dict) -> list[dict]:
    """One row per dataset that has a [0, 1] headline metric (perplexity has its own scale and stays out): the
    data of the per-dataset bar plots that `dvc plots diff` draws across experiments."""
    return [{"dataset": name, "metric": key, "score": result[key]}
            for name, result in sorted(results.items()) if (key := headline(result))]


def _mean(values) -> float:
    values = list(values)
    return sum(values) / max(1, len(values))
