"""lancy.compare on `dvc exp show --json` output (its schema: dvc/repo/experiments/serialize.py) and on per-row
results (lancy.results) of synthetic runs."""
import json

import numpy as np
import pytest

from lancy import compare
from lancy.errors import LancyError
from lancy.results import task_results


def _state(rev, name, imdb, accuracy, share, error=None, seed=42):
    params = {"seed": seed, "mixture": {"imdb": imdb, "sst2": 0.4, "gsm8k": 0.2}, "mix": {"sft_rows": 3000},
              "sft": {"seed": -1}}
    metrics = {
        "metrics/eval/pretrain.json": {"data": {"imdb": {"accuracy": 0.0, "answer_loss": 3.0}}},
        "metrics/eval/sft.json": {"data": {"imdb": {"accuracy": accuracy, "answer_loss": 0.5},
                                           "gsm8k": {"exact_match": 0.02, "answer_loss": 1.4},
                                           "wikitext": {"perplexity": 349.2}}},
        "metrics/eval/grpo.json": {"data": {"imdb": {"accuracy": accuracy + 0.01, "answer_loss": 0.4}}},
        "metrics/sft_shares.json": {"data": {"imdb": share, "sst2": 1 - share}},
    }
    return {"rev": rev, "name": name, "error": error, "experiments": None,
            "data": {"rev": rev, "timestamp": None, "params": {"params.yaml": {"data": params}},
                     "metrics": metrics, "deps": {}, "outs": {}, "meta": {}}}


def _group(state, executor_state="success"):
    return {"revs": [state], "name": state["name"], "executor": {"state": executor_state, "name": None,
                                                                 "local": None}}


@pytest.fixture
def show():
    head = _state("a" * 40, "main", 0.4, 0.90, 0.55)
    head["experiments"] = [
        _group(_state("b" * 40, "exp-low", 0.2, 0.80, 0.35)),
        _group(_state("c" * 40, "exp-high", 0.8, 0.95, 0.75)),
        _group(_state("d" * 40, "exp-queued", 0.5, 0.0, 0.0), "queued"),
        _group(_state("e" * 40, "exp-failed", 0.6, 0.0, 0.0), "failed"),
    ]
    workspace = _state("workspace", None, 0.4, 0.90, 0.55)
    return [workspace, head]


def test_experiments_are_the_baseline_and_finished_runs(show):
    rows = compare.experiments(show)
    assert [r["name"] for r in rows] == ["main", "exp-low", "exp-high"]
    assert rows[1]["params"]["mixture.imdb"] == 0.2 and rows[1]["rev"] == "b" * 40
    # in the order named: the first named is A of the comparison
    assert [r["name"] for r in compare.experiments(show, ["exp-high", "bbbbbbb"])] == ["exp-high", "exp-low"]
    with pytest.raises(LancyError, match="exp-nope"):
        compare.experiments(show, ["exp-nope"])


def test_overview_holds_varying_params_scores_with_their_errors_perplexity_and_shares(show, monkeypatch):
    read = []

    def details(row, models=compare.MODELS):  # each run's metrics/eval/<model>_details.json, as at its revision
        read.append(row["rev"])
        return {"sft": {"imdb": {"accuracy": 0.0, "accuracy_se": 0.02, "rows": 200}}, "grpo": {}, "pretrain": {}}

    monkeypatch.setattr(compare, "details", details)
    rows = compare.experiments(show)
    assert compare.varying(rows) == ["mixture.imdb"]
    header, body = compare.overview(rows)
    assert header[:2] == ["experiment", "mixture.imdb"]
    for column in ("sft imdb accuracy", "sft gsm8k exact_match", "sft wikitext perplexity", "grpo imdb accuracy",
                   "SFT share imdb", "SFT share sst2"):
        assert column in header
    low = dict(zip(header, body[1], strict=True))
    assert low["experiment"] == "exp-low" and low["sft imdb accuracy"] == (0.80, 0.02)
    assert "| exp-high | 0.8 | 0 | 0.02 | 0.95 ± 0.02 | 349.2 | 0.96 | 0.75 | 0.25 |" in compare.markdown(header, body)
    assert read == [row["rev"] for row in rows]  # once per run


def test_details_of_a_revision_that_cannot_be_read_are_empty(show):
    row = compare.experiments(show)[1]
    assert compare.details({**row, "rev": "0" * 40}) == {"pretrain": {}, "sft": {}, "grpo": {}}
    assert compare.details({**row, "metrics": {}}) == {}


def test_experiments_that_differ_only_in_seeds_form_a_group():
    def row(name, imdb, seed, sft_seed=-1, baseline=False):
        return {"name": name, "rev": name, "baseline": baseline, "metrics": {},
                "params": {"seed": seed, "sft.seed": sft_seed, "mixture.imdb": imdb}}

    rows = [row("main", 0.4, 42, baseline=True), row("s1", 0.4, 1), row("high", 0.7, 42), row("high1", 0.7, 1),
            row("sft43", 0.4, 42, 43)]
    found = compare.groups(rows)
    assert [g["name"] for g in found] == ["main (3 seeds)", "mixture.imdb=0.7 (2 seeds)"]
    assert [[r["name"] for r in g["runs"]] for g in found] == [["main", "s1", "sft43"], ["high", "high1"]]
    assert compare.seeds_of(rows[0]) == (42, 42, 42, 42) and compare.seeds_of(rows[4]) == (42, 42, 43, 42)
    assert compare.matched(found[0], found[1]) == [(0, 0), (1, 1)]  # the same seeds, so the same held-out rows


ROWS = 400


def _results(rng, chance, shift=0.0, loss_shift=0.0):
    """Per-row results of one run: imdb rows answered right with each row's chance (+ shift), their answer
    losses, and wikitext windows."""
    right = rng.random(ROWS) < np.clip(chance + shift, 0, 1)
    nll = rng.gamma(2.0, 0.5, ROWS) + loss_shift + (1 - right)
    imdb = task_results("imdb", {"id": [f"row{i}" for i in range(ROWS)], "score": right.astype(float).tolist(),
                                 "invalid": [False] * ROWS, "nll": nll.tolist(), "tokens": [2] * ROWS})
    wiki = task_results("wikitext", {"id": [f"w{i}" for i in range(50)], "nll": (rng.gamma(5, 20, 50)).tolist(),
                                     "tokens": [255] * 50})
    import pyarrow as pa

    return pa.concat_tables([imdb, wiki])


@pytest.fixture
def sweep(show, monkeypatch):
    """The baseline and exp-high with three seeds each (the same seeds: paired rows); exp-high's SFT model answers
    0.5 more of each IMDB row's chance, and each GRPO model 0.3 more than its SFT model; exp-low has another seed
    (unpaired)."""
    head = show[1]
    head["experiments"] = [_group(_state("b" * 40, "exp-low", 0.2, 0.80, 0.35, seed=7)),
                           _group(_state("c" * 40, "exp-high", 0.8, 0.95, 0.75))]
    for rev, seed in (("f", 1), ("h", 2)):
        head["experiments"] += [_group(_state(rev * 40, f"main-seed{seed}", 0.4, 0.90, 0.55, seed=seed)),
                                _group(_state(rev.upper() * 40, f"exp-high-seed{seed}", 0.8, 0.95, 0.75, seed=seed))]
    rng = np.random.default_rng(0)
    chance = rng.beta(0.5, 0.5, ROWS)
    pretrained = _results(rng, chance * 0)  # one pretraining, shared by every run
    results = {(rev * 40, "pretrain"): pretrained for rev in "afhbcFH"}
    for rev, shift in (("a", 0.0), ("f", 0.0), ("h", 0.0), ("b", 0.0), ("c", 0.5), ("F", 0.5), ("H", 0.5)):
        results[(rev * 40, "sft")] = _results(rng, chance, shift)
        results[(rev * 40, "grpo")] = _results(rng, chance, shift + 0.3, loss_shift=-0.3)
    monkeypatch.setattr(compare, "exp_show", lambda: json.loads(json.dumps(show)))
    monkeypatch.setattr("lancy.results.read_results", lambda model, rev=None: results[(rev, model)])
    monkeypatch.setattr(compare, "details", lambda row, models=compare.MODELS: {})  # no revisions to read here
    return results


def _line(report: str, start: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(start))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_groups_compare_paired_over_rows_and_seeds_with_verdicts(sweep, tmp_path):
    compare.main(["--out", str(tmp_path)])
    report = (tmp_path / "compare.md").read_text()
    assert "### main (3 seeds) (A) against mixture.imdb=0.2 (B)" in report  # seed 7: no shared seeds, unpaired
    title = "### main (3 seeds) (A) against mixture.imdb=0.8 (3 seeds) (B) (pretrain: the same results, a shared stage)"
    high = report.split(title)[1]
    assert "| pretrain |" not in report  # nothing to compare: left out of the table and of Holm's family
    cells = _line(high, "| sft | imdb | accuracy")
    low, up = (float(v) for v in cells[5].split("[")[1].rstrip("]").split(","))
    assert low < -0.03 and up < 0 and cells[8] == "mixture.imdb=0.8 (3 seeds) better"
    assert cells[10:] == ["1200", "3"]  # 400 shared rows in each of 3 seeds
    same = _line(high, "| sft | wikitext | loss (lower is better)")
    assert same[8] == "no detectable difference" and float(same[6]) <= float(same[7])  # Holm never lowers a p
    assert (tmp_path / "compare-differences.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    groups = _line(report.split("## Groups")[1], "| mixture.imdb=0.8 (3 seeds) |")
    assert groups[1] == "3" and "0.95 (sd 0)" in groups  # sft imdb accuracy: the same 0.95 in every seed


def test_two_models_of_each_group_compare_on_the_same_rows(sweep, tmp_path):
    compare.main(["--out", str(tmp_path), "--models", "sft", "grpo", "main", "main-seed1", "main-seed2"])
    report = (tmp_path / "compare.md").read_text()
    assert "### main (3 seeds): sft (A) against grpo (B)" in report
    accuracy = _line(report, "| sft / grpo | imdb | accuracy")
    assert accuracy[8] == "grpo better" and accuracy[11] == "3"
    loss = _line(report, "| sft / grpo | imdb | answer_loss (lower is better)")
    assert float(loss[5].split(" ")[0]) > 0 and loss[8] == "grpo better"  # grpo's loss is lower


def test_main_needs_two_experiments_and_a_parameter_that_differs(show, tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "exp_show", lambda: json.loads(json.dumps(show)))
    with pytest.raises(LancyError, match="--x seed does not differ"):
        compare.main(["--out", str(tmp_path), "--x", "seed"])
    with pytest.raises(LancyError, match="fewer than two"):
        compare.main(["--out", str(tmp_path), "exp-low"])
