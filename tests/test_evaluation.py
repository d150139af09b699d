"""lancy.evaluation on a tiny random Llama and a tokenizer trained here: metrics per task kind, batched greedy
generation with left padding, perplexity. Offline and CPU only (a few seconds)."""
import math
import random

import numpy as np
import pytest
import torch

from lancy import evaluation
from lancy.catalog import CATALOG
from lancy.evaluation import answer_loss, evaluate_tasks, generate, label_tokens, perplexity
from lancy.harmonize import to_record
from lancy.tokenization import train_tokenizer

WORDS = ("the market rose fell stock price profit loss revenue quarter bank rate bond yield movie review "
         "good bad great awful positive negative sentiment answer question solve def return import").split()
PROMPT_WORDS = ("Classify the sentiment of this movie review as either 'positive' or 'negative'. Review: Sentiment: "
                "Answer the financial question. Question: Answer: Solve this math problem step by step. Give the "
                "final number after '####'. A. B. C. D. Solution: def f(): return 1").split()


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS + PROMPT_WORDS) for _ in range(rng.randint(3, 12))) for _ in range(400)]
    tokenizer = train_tokenizer(texts, 300)
    assert len(tokenizer) == 300
    return tokenizer


def tiny_model(tokenizer, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        # Untied: a random model with tied embeddings just repeats its last input token, whatever the context,
        # which would make the padding comparison below vacuous.
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer)


def records(name, rows):
    out = [to_record(CATALOG[name], row)[0] for row in rows]
    assert None not in out
    return out


REVIEWS = ["good movie", "bad movie, awful", "great great", "the price fell", "a good review", "awful loss"]
IMDB = records("imdb", [{"text": text, "label": i % 2} for i, text in enumerate(REVIEWS)])
MMLU = records("mmlu", [{"question": f"Which is {n}?", "subject": "", "choices": ["1", "2", "3", "4"], "answer": n - 1}
                        for n in (1, 2, 3, 4, 2)])
GSM8K = records("gsm8k", [{"question": f"What is {a} + {a}?", "answer": f"{a} + {a} = {2 * a}\n#### {2 * a}"}
                          for a in (1, 2, 3)])
FIQA = records("fiqa", [{"question": "What is a bond?", "answer": "A loan to a company."},
                        {"question": "Is the rate good?", "answer": "It depends on the yield."}])
ONE_TESTS = "import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_one(self):\n        assert f() == 1\n"
CODE = records("bigcodebench", [{"instruct_prompt": "Return one.", "code_prompt": "def f():\n",
                                 "canonical_solution": "    return 1\n", "test": ONE_TESTS}] * 3)


def se(values) -> float:
    """The standard error of a mean over rows, as lancy.stats computes it (sd with ddof 1, over sqrt n)."""
    return pytest.approx(float(np.std(values, ddof=1) / np.sqrt(len(values))))


def check_metrics(metrics, keys, rows):
    assert set(metrics) == {*keys, f"{keys[0]}_se", "rows"}
    assert metrics["rows"] == rows
    for key in keys:
        assert isinstance(metrics[key], float) and 0.0 <= metrics[key] <= 1.0, metrics


@pytest.mark.parametrize(("task", "rows"), [("classification", IMDB), ("multiple_choice", MMLU)])
def test_label_tasks_give_accuracy_and_invalid_rate(model, tokenizer, task, rows):
    metrics = evaluate_tasks(model, tokenizer, task, rows, max_new_tokens=16, batch_size=4)
    check_metrics(metrics, ("accuracy", "invalid_rate"), len(rows))
    assert metrics["accuracy"] + metrics["invalid_rate"] <= 1.0  # a valid label can still be wrong, never both


def test_math_gives_exact_match(model, tokenizer):
    check_metrics(evaluate_tasks(model, tokenizer, "math", GSM8K, 8, 2), ("exact_match",), len(GSM8K))


@pytest.mark.parametrize("task", ["qa", "instruction"])
def test_qa_and_instructions_give_token_f1(model, tokenizer, task):
    check_metrics(evaluate_tasks(model, tokenizer, task, FIQA, 8, 2), ("token_f1",), len(FIQA))


def test_code_gives_pass_at_1_and_syntax_valid(model, tokenizer):
    check_metrics(evaluate_tasks(model, tokenizer, "code", CODE, 8, 2), ("pass_at_1", "syntax_valid"), len(CODE))


# ----------------------------------------------------------------------- metrics on known generated text

@pytest.fixture
def scripted(monkeypatch):
    """Replace generation with fixed outputs; records the token budget each call asked for."""
    calls = []

    def install(outputs):
        def fake_generate(model, tokenizer, prompts, max_new_tokens, batch_size):
            calls.append((list(prompts), max_new_tokens, batch_size))
            assert len(prompts) == len(outputs)
            return list(outputs)

        monkeypatch.setattr(evaluation, "generate", fake_generate)
        return calls

    return install


def test_classification_metrics_values(tokenizer, scripted):
    calls = scripted([" negative", " Negative.", " great", "", " positive", " positive"])
    metrics = evaluate_tasks(None, tokenizer, "classification", IMDB, max_new_tokens=64, batch_size=3)
    # answers: negative, positive, negative, positive, negative, positive
    assert metrics == {"accuracy": pytest.approx(2 / 6), "accuracy_se": se([1, 1, 0, 0, 0, 0]),
                       "invalid_rate": pytest.approx(2 / 6), "rows": 6}
    prompts, budget, batch = calls[0]
    assert prompts == [r["prompt"] for r in IMDB] and batch == 3
    assert budget == label_tokens(tokenizer, ["negative", "positive"])  # not max_new_tokens: only a label


def test_multiple_choice_metrics_values(tokenizer, scripted):
    scripted([" A", "(B)", " c.", " E", " D"])  # answers A, B, C, D, B
    metrics = evaluate_tasks(None, tokenizer, "multiple_choice", MMLU, 64, 8)
    assert metrics == {"accuracy": pytest.approx(3 / 5), "accuracy_se": se([1, 1, 1, 0, 0]),
                       "invalid_rate": pytest.approx(1 / 5), "rows": 5}


def test_math_metrics_values(tokenizer, scripted):
    calls = scripted(["1 + 1 = 2\n#### 2", "#### 5", "so 6"])
    assert evaluate_tasks(None, tokenizer, "math", GSM8K, 48, 2) == {"exact_match": pytest.approx(2 / 3),
                                                                     "exact_match_se": se([1, 1, 0]), "rows": 3}
    assert calls[0][1] == 48


def test_exact_math_answers(tokenizer, scripted):
    rows = records("dm_math_numbers__is_prime", [{"question": "Is 7 prime?", "answer": "True"},
                                                 {"question": "Is 8 prime?", "answer": "False"}])
    scripted([" True\nQuestion: Is 9 prime?", " True"])
    assert evaluate_tasks(None, tokenizer, "math", rows, 8, 2) == {"exact_match": 0.5, "exact_match_se": se([1, 0]),
                                                                   "rows": 2}


def test_qa_metrics_values(tokenizer, scripted):
    scripted([" A loan to a company.", " No idea"])
    assert evaluate_tasks(None, tokenizer, "qa", FIQA, 16, 2) == {"token_f1": pytest.approx(0.5),
                                                                  "token_f1_se": se([1, 0]), "rows": 2}


def test_code_metrics_values(tokenizer, scripted):
    """pass@1 runs each row's unit tests; code that does nothing is not valid code, though it compiles."""
    scripted(["def f():\n    return 1", "def f(:", "x = 1", "def f():\n    return 2", "pass", ""])
    metrics = evaluate_tasks(None, tokenizer, "code", CODE * 2, 16, 2)
    assert metrics == {"pass_at_1": pytest.approx(1 / 6), "pass_at_1_se": se([1, 0, 0, 0, 0, 0]),
                       "syntax_valid": pytest.approx(3 / 6), "rows": 6}


def test_code_without_unit_tests_has_no_pass_at_1(tokenizer, scripted):
    untested = records("bigcodebench", [{"instruct_prompt": "Return one.", "code_prompt": "def f():\n",
                                         "canonical_solution": "    return 1\n"}])
    assert untested[0]["tests"] == ""
    scripted(["def f():\n    return 1"])
    assert evaluate_tasks(None, tokenizer, "code", untested, 16, 2) == {"pass_at_1": None, "pass_at_1_se": None,
                                                                         "syntax_valid": 1.0, "rows": 1}


def test_label_tokens_counts_the_longest_label(tokenizer):
    counts = {label: len(tokenizer(" " + label, add_special_tokens=False)["input_ids"])
              for label in ("A", "B", "not_entailment", "entailment")}
    assert label_tokens(tokenizer, ["A", "B"]) == max(counts["A"], counts["B"]) + 1
    assert label_tokens(tokenizer, ["entailment", "not_entailment"]) == counts["not_entailment"] + 1


def test_label_task_with_no_records(model, tokenizer):
    assert evaluate_tasks(model, tokenizer, "classification", [], 16, 4)["rows"] == 0


# ------------------------------------------------------------------------------------------- generation

def test_generate_left_padding_matches_a_lone_prompt(model, tokenizer):
    short = "the market rose"
    longer = ["the bank rate fell and the bond yield rose in the quarter", "profit loss revenue " * 5]
    alone = generate(model, tokenizer, [short], max_new_tokens=8, batch_size=4)
    batched = generate(model, tokenizer, [longer[0], short, longer[1]], max_new_tokens=8, batch_size=4)
    assert len(alone) == 1 and len(batched) == 3
    assert alone[0] == batched[1]
    # Each prompt alone gives what it gives in the batch, and the outputs differ from prompt to prompt (the model
    # reads its context, so the comparison is not vacuous; right padding fails it).
    lone = [generate(model, tokenizer, [p], 8, 1)[0] for p in (longer[0], short, longer[1])]
    assert lone == batched
    assert len(set(lone)) == 3 and all(lone)
    assert tokenizer.padding_side == "left"


def test_longest_first_orders_by_length_keeping_ties_in_order():
    from lancy.evaluation import longest_first

    assert longest_first([[1], [1, 2, 3], [], [4, 5, 6], [7, 8]]) == [1, 3, 4, 0, 2]


def test_generate_returns_only_new_text_in_order(model, tokenizer):
    prompts = [f"the price {w}" for w in ("rose", "fell", "rose and fell", "good", "bad")]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=4, batch_size=2)  # batches of 2, 2, 1
    assert outputs == [generate(model, tokenizer, [p], 4, 1)[0] for p in prompts]
    for prompt, output in zip(prompts, outputs, strict=True):
        assert output and prompt not in output  # the continuation only, never the prompt


# ------------------------------------------------------------------------------------------- perplexity

TEXT = ["the market rose and the bank rate fell", "good movie great review", "profit loss revenue quarter"] * 2


def test_perplexity_is_finite_and_above_one(model, tokenizer):
    result = perplexity(model, tokenizer, TEXT, batch_size=2)
    assert set(result) == {"perplexity", "perplexity_se", "tokens"}
    assert math.isfinite(result["perplexity"]) and result["perplexity"] > 1.0
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert 0 < result["tokens"] == sum(len(i) + 1 for i in ids) < 256  # texts joined with EOS, under one window
    # A text longer than the context (256 positions) is scored in whole windows of it.
    long = perplexity(model, tokenizer, TEXT * 6, batch_size=2)
    assert long["tokens"] % 256 == 0 and long["tokens"] > 256
    assert math.isfinite(long["perplexity"]) and long["perplexity"] > 1.0


def test_perplexity_drops_after_training_on_the_text(tokenizer):
    model = tiny_model(tokenizer, seed=1)
    before = perplexity(model, tokenizer, TEXT, batch_size=2)["perplexity"]
    ids = torch.tensor([[t for i in tokenizer(TEXT, add_special_tokens=False)["input_ids"]
                         for t in [*i, tokenizer.eos_token_id]]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(30):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    model.eval()
    after = perplexity(model, tokenizer, TEXT, batch_size=2)["perplexity"]
    assert after < before / 2, (before, after)


# ------------------------------------------------------------------------------------------- answer loss

def _completion_loss_alone(model, tokenizer, record) -> tuple[float, int]:
    """Summed loss of one record's completion + EOS given its prompt, computed on its own (no batch, no padding)."""
    prompt = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
    completion = tokenizer(record["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + completion])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)[len(prompt) - 1 : -1]
    return -logp.gather(1, torch.tensor(completion)[:, None]).sum().item(), len(completion)


def test_answer_loss_is_the_loss_per_completion_token_of_each_row_alone(model, tokenizer):
    rows = IMDB + GSM8K + FIQA + MMLU  # prompts and completions of many lengths: padded batches of 4
    losses = [_completion_loss_alone(model, tokenizer, r) for r in rows]
    expected = sum(loss for loss, _ in losses) / sum(n for _, n in losses)
    assert answer_loss(model, tokenizer, rows, batch_size=4) == pytest.approx(expected, rel=1e-4)
    assert answer_loss(model, tokenizer, rows, batch_size=1) == pytest.approx(expected, rel=1e-4)
    assert answer_loss(model, tokenizer, [{**IMDB[0], "completion": ""}], 4) is None  # nothing to score


def test_answer_loss_sends_only_the_answers_positions_through_the_head(model, tokenizer):
    """The head projects the completion tokens (and EOS) alone, not the prompts' positions; the loss is the one
    above (test_answer_loss_is_the_loss_per_completion_token_of_each_row_alone)."""
    rows = IMDB + GSM8K
    answers = sum(n for _, n in (_completion_loss_alone(model, tokenizer, r) for r in rows))
    projected = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: projected.append(args[0].shape[:-1].numel()))
    try:
        answer_loss(model, tokenizer, rows, batch_size=4)
    finally:
        hook.remove()
    prompts = sum(len(tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]) for r in rows)
    assert sum(projected) == answers < prompts


def test_answer_loss_of_soft_capped_logits_comes_from_the_models_own(tokenizer):
    """A head that is more than a linear map (Gemma 2's soft-capped logits) goes through the model's own forward."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    model = Gemma2ForCausalLM(Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        head_dim=16, intermediate_size=64, pad_token_id=tokenizer.pad_token_id, final_logit_softcapping=0.5)).eval()
    rows = IMDB + GSM8K
    losses = [_completion_loss_alone(model, tokenizer, r) for r in rows]
    expected = sum(loss for loss, _ in losses) / sum(n for _, n in losses)
    assert answer_loss(model, tokenizer, rows, batch_size=4) == pytest.approx(expected, rel=1e-4)


def test_losses_bound_the_logits_of_a_pass(model, tokenizer, monkeypatch):
    """A large vocabulary gets fewer rows per forward pass, and the losses stay the same."""
    from types import SimpleNamespace

    from transformers import LlamaConfig

    assert evaluation._rows_per_pass(SimpleNamespace(config=LlamaConfig(vocab_size=151_936)), 256, 32) == 3
    assert evaluation._rows_per_pass(SimpleNamespace(config=LlamaConfig(vocab_size=4096)), 256, 32) == 32
    rows, whole = IMDB + GSM8K, answer_loss(model, tokenizer, IMDB + GSM8K, batch_size=8)
    text = perplexity(model, tokenizer, TEXT * 6, batch_size=8)
    monkeypatch.setattr(evaluation, "LOGITS_BUDGET", 1)  # one row per pass
    assert answer_loss(model, tokenizer, rows, batch_size=8) == pytest.approx(whole, rel=1e-5)
    assert perplexity(model, tokenizer, TEXT * 6, batch_size=8) == pytest.approx(text, rel=1e-5)


def test_answer_loss_falls_when_the_model_learns_the_answers(tokenizer):
    model = tiny_model(tokenizer, seed=3)
    rows = IMDB[:4]
    before = answer_loss(model, tokenizer, rows, batch_size=2)
    sequences = [tokenizer(r["prompt"] + r["completion"], add_special_tokens=False)["input_ids"]
                 + [tokenizer.eos_token_id] for r in rows]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        for ids in sequences:
            optimizer.zero_grad()
            model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss.backward()
            optimizer.step()
    model.eval()
    assert answer_loss(model, tokenizer, rows, batch_size=2) < before / 4


def test_trained_model_reaches_full_accuracy(tokenizer):
    """A model trained on the records' prompt + completion + EOS answers them: generation, parsing and metric agree."""
    model = tiny_model(tokenizer, seed=2)
    rows = IMDB[:4]
    sequences = [tokenizer(r["prompt"] + r["completion"], add_special_tokens=False)["input_ids"]
                 + [tokenizer.eos_token_id] for r in rows]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        optimizer.zero_grad()
        for sequence in sequences:
            ids = torch.tensor([sequence])
            model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    model.eval()
    metrics = evaluate_tasks(model, tokenizer, "classification", rows, max_new_tokens=16, batch_size=4)
    assert metrics == {"accuracy": 1.0, "accuracy_se": 0.0, "invalid_rate": 0.0, "rows": 4}


# ------------------------------------------------------------------------------------------- per-row results

def test_answer_losses_are_each_rows_own_and_sum_to_the_answer_loss(model, tokenizer):
    from lancy.evaluation import answer_losses

    rows = IMDB + GSM8K + [{**IMDB[0], "completion": ""}]  # the last has nothing to score
    nll, tokens = answer_losses(model, tokenizer, rows, batch_size=4)
    assert nll[-1] is None and tokens[-1] == 0
    for row, loss, count in zip(rows[:-1], nll, tokens, strict=False):
        alone, length = _completion_loss_alone(model, tokenizer, row)
        assert loss == pytest.approx(alone, rel=1e-4) and count == length
    assert sum(nll[:-1]) / sum(tokens) == pytest.approx(answer_loss(model, tokenizer, rows, batch_size=4), rel=1e-6)


def test_summaries_come_from_the_rows(tokenizer, scripted):
    from lancy.evaluation import answer_rows, summarize

    scripted([" negative", " Negative.", " great", "", " positive", " positive"])
    rows = answer_rows(None, tokenizer, "classification", IMDB, max_new_tokens=64, batch_size=3)
    assert rows["score"] == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0] and rows["invalid"] == [False, False, True, True, False,
                                                                                    False]
    rows.update(nll=[1.0, 2.0, 3.0, 4.0, None, 6.0], tokens=[1, 1, 2, 2, 0, 2])  # a ratio of sums: 16 / 8
    result = summarize("classification", rows)
    assert result["answer_loss"] == 2.0 and result["loss_rows"] == 5 and result["rows"] == 6
    z = (np.array([1.0, 2.0, 3.0, 4.0, 6.0]) - 2.0 * np.array([1, 1, 2, 2, 2])) / 1.6  # the delta method
    assert result["answer_loss_se"] == pytest.approx(np.std(z, ddof=1) / np.sqrt(5))


def test_corpus_windows_have_stable_ids_and_give_the_perplexity(model, tokenizer):
    from lancy.evaluation import corpus_windows

    windows = corpus_windows(model, tokenizer, TEXT * 6, batch_size=2)
    assert windows == corpus_windows(model, tokenizer, TEXT * 6, batch_size=3)  # ids and losses: any batching
    assert len(set(windows["id"])) == len(windows["id"]) and all(len(i) == 16 for i in windows["id"])
    expected = math.exp(sum(windows["nll"]) / sum(windows["tokens"]))
    assert perplexity(model, tokenizer, TEXT * 6, batch_size=2)["perplexity"] == pytest.approx(expected)


def test_the_top_level_metrics_are_each_datasets_score_answer_loss_and_perplexity():
    from lancy.evaluation import compact

    details = {
        "imdb": {"accuracy": 0.9, "accuracy_se": 0.01, "answer_loss": 0.2, "answer_loss_se": 0.02, "invalid_rate": 0.0,
                 "rows": 200, "loss_rows": 1500},
        "gsm8k": {"answer_loss": 1.4, "answer_loss_se": 0.1, "loss_rows": 1500},  # no generation (a search proxy)
        "code": {"pass_at_1": None, "pass_at_1_se": None, "answer_loss": 0.8, "rows": 3},  # no unit tests
        "wikitext": {"perplexity": 280.0, "perplexity_se": 5.8, "tokens": 60000},
    }
    assert compact(details) == {"code": {"answer_loss": 0.8}, "gsm8k": {"answer_loss": 1.4},
                                "imdb": {"accuracy": 0.9, "answer_loss": 0.2}, "wikitext": {"perplexity": 280.0}}
