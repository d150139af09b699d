"""lancy.compare on `dvc exp show --json` output (its schema: dvc/repo/experiments/serialize.py)."""
import json

import pytest

from lancy import compare
from lancy.errors import LancyError


def _state(rev, name, imdb, accuracy, share, error=None):
    params = {"seed": 42, "mixture": {"imdb": imdb, "sst2": 0.4, "gsm8k": 0.2}, "mix": {"sft_rows": 3000}}
    metrics = {
        "metrics/eval/sft.json": {"data": {"imdb": {"accuracy": accuracy, "rows": 200},
                                           "gsm8k": {"exact_match": 0.02, "rows": 200},
                                           "wikitext": {"perplexity": 349.2, "tokens": 8448}}},
        "metrics/eval/grpo.json": {"data": {"imdb": {"accuracy": accuracy + 0.01, "rows": 200}}},
        "metrics/tokenize.json": {"data": {"sft": {"sources": {"imdb": {"share": share, "tokens": 1},
                                                               "sst2": {"share": 1 - share, "tokens": 1}}}}},
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
    assert [r["name"] for r in compare.experiments(show, ["exp-high", "bbbbbbb"])] == ["exp-low", "exp-high"]
    with pytest.raises(LancyError, match="exp-nope"):
        compare.experiments(show, ["exp-nope"])


def test_table_holds_varying_params_scores_perplexity_and_shares(show):
    rows = compare.experiments(show)
    assert compare.varying(rows) == ["mixture.imdb"]
    header, body = compare.table(rows)
    assert header[:2] == ["experiment", "mixture.imdb"]
    for column in ("sft imdb accuracy", "sft gsm8k exact_match", "sft wikitext perplexity", "grpo imdb accuracy",
                   "SFT share imdb", "SFT share sst2"):
        assert column in header
    low = dict(zip(header, body[1], strict=True))
    assert low["experiment"] == "exp-low" and low["sft imdb accuracy"] == 0.80 and low["SFT share imdb"] == 0.35
    assert low["grpo imdb accuracy"] == pytest.approx(0.81)
    # shares of right rows carry their 95% interval for the 200 rows evaluated; perplexity and token shares do not
    assert ("| exp-high | 0.8 | 0.02 [0.01, 0.05] | 0.95 [0.91, 0.97] | 349.2 | 0.96 [0.92, 0.98] | 0.75 | 0.25 |"
            in compare.markdown(header, body))


@pytest.mark.parametrize(("share", "rows", "low", "high"), [
    (0.5, 100, 0.4038, 0.5962),   # the textbook case
    (0.0, 200, 0.0, 0.0188),      # none right: z^2 / (n + z^2) above, not an empty interval
    (1.0, 200, 0.9812, 1.0),
    (0.24, 200, 0.1861, 0.3037),  # the committed sft model on fpb_allagree
    (0.39, 200, 0.3251, 0.4591),  # and the grpo model
])
def test_score_interval_is_wilsons(share, rows, low, high):
    assert compare.Score(share, rows).interval() == pytest.approx((low, high), abs=1e-4)
    assert compare.Score(share, rows) == share


def test_main_writes_the_report_and_picture(show, tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "exp_show", lambda: json.loads(json.dumps(show)))
    compare.main(["--out", str(tmp_path)])
    report = (tmp_path / "compare.md").read_text()
    assert "![held-out scores against mixture.imdb](compare.png)" in report
    assert report.count("| exp-") == 2 and "| main |" in report
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(LancyError, match="--x seed does not differ"):
        compare.main(["--out", str(tmp_path), "--x", "seed"])
    with pytest.raises(LancyError, match="fewer than two"):
        compare.main(["--out", str(tmp_path), "exp-low"])
