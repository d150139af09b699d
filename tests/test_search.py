"""lancy.search: seeded Dirichlet sampling, the fit recovering a known optimum, the report from exp show rows."""
import json

import numpy as np
import pytest
import yaml

from lancy import search
from lancy.errors import LancyError

MIXTURE = {"imdb": 0.4, "sst2": 0.4, "gsm8k": 0.2, "wikitext": 0.0}
OPTIMUM = np.array([0.6, 0.3, 0.1])


def test_sampling_is_seeded_extreme_and_over_the_weighted_sources():
    draws = search.sample_mixtures(MIXTURE, 16, seed=0)
    assert draws == search.sample_mixtures(MIXTURE, 16, seed=0)
    assert draws != search.sample_mixtures(MIXTURE, 16, seed=1)
    assert all(list(d) == ["imdb", "sst2", "gsm8k"] for d in draws)  # wikitext has weight 0: not searched
    weights = np.array([list(d.values()) for d in draws])
    assert np.allclose(weights.sum(axis=1), 1, atol=0.02) and (weights >= 0).all()
    assert (weights == 0).any(), "small Dirichlet scales must give some source exactly 0"
    assert weights.max() > 0.9 and np.ptp(weights[:, 0]) > 0.5  # extreme mixtures, spread over the simplex


def test_fit_recovers_a_known_optimum():
    rng = np.random.default_rng(3)
    xs = rng.dirichlet(np.ones(3), 24)
    ys = 0.9 - ((xs - OPTIMUM) ** 2).sum(axis=1) + rng.normal(0, 0.003, len(xs))
    result = search.fit(xs, ys, seed=0)
    assert np.abs(result["proposal"] - OPTIMUM).sum() < 0.15, result["proposal"]
    assert result["quality"][result["best"]]["spearman"] > 0.8
    assert result["predicted"] == pytest.approx(0.9, abs=0.02)
    with pytest.raises(LancyError, match="at least 4"):
        search.fit(xs[:3], ys[:3])


def test_fit_recovers_a_known_minimum_of_a_loss():
    rng = np.random.default_rng(4)
    xs = rng.dirichlet(np.ones(3), 24)
    ys = 0.4 + 2 * ((xs - OPTIMUM) ** 2).sum(axis=1) + rng.normal(0, 0.003, len(xs))
    result = search.fit(xs, ys, seed=0, lower=True)
    assert np.abs(result["proposal"] - OPTIMUM).sum() < 0.15, result["proposal"]
    assert result["predicted"] == pytest.approx(0.4, abs=0.02)
    assert np.abs(search.fit(xs, ys, seed=0)["proposal"] - OPTIMUM).sum() > 0.5  # maximizing it: far from there


def test_proxy_settings_must_leave_pretraining_alone():
    search.check_proxy({"sft.max_steps": 60, "evaluate.max_rows": 50, "mix.sft_rows": 500}, "score")
    for key in ("pretrain.max_steps", "corpus.imdb", "model.hidden_size", "tokenize.max_length"):
        with pytest.raises(LancyError, match=f"search.proxy.{key}"):
            search.check_proxy({key: 1}, "loss")


def test_a_score_target_needs_proxies_that_generate():
    search.check_proxy({"evaluate.generate": False}, "loss")
    with pytest.raises(LancyError, match="search.proxy.evaluate.generate"):
        search.check_proxy({"evaluate.generate": False}, "score")
    search.check_proxy({}, "score", "pretrain", generate_pretrain=True)
    search.check_proxy({"evaluate.generate_pretrain": True}, "score", "pretrain")
    with pytest.raises(LancyError, match="evaluate.generate_pretrain"):
        search.check_proxy({}, "score", "pretrain")


def test_queue_commands():
    (command,) = search.queue_commands([{"imdb": 0.7, "sst2": 0.0}], {"sft.max_steps": 60}, ["search-proxy-00"],
                                       "sft")
    assert command == ["dvc", "exp", "run", "--queue", "-n", "search-proxy-00", "evaluate@sft",
                       "-S", "mixture.imdb=0.7", "-S", "mixture.sst2=0.0", "-S", "sft.max_steps=60"]


def _row(name, weights, score, generated=True):
    """An experiment row; its answer loss falls as its score rises: 2 x (1 - score)."""
    result = {"accuracy": score, "rows": 10} if generated else {"rows": 10}
    return {"name": name, "rev": name, "baseline": False, "params": {f"mixture.{n}": w for n, w in weights.items()},
            "metrics": {"metrics/eval/sft.json": {n: {**result, "answer_loss": 2 * (1 - score)}
                                                  for n in ("imdb", "sst2")}}}


def test_observations_normalize_weights_and_average_the_target():
    rows = [_row("search-proxy-00", {"imdb": 2, "sst2": 2, "gsm8k": 0}, 0.5), _row("other", {"imdb": 1}, 0.9),
            _row("search-proxy-01", {"imdb": 1}, 0.75, generated=False)]
    names, target = ["imdb", "sst2", "gsm8k"], ["imdb", "sst2"]
    xs, ys, labels = search.observations(rows, names, "sft", target, "search-proxy-", "score")
    assert labels == ["search-proxy-00"] and xs.tolist() == [[0.5, 0.5, 0.0]] and ys.tolist() == [0.5]
    xs, ys, labels = search.observations(rows, names, "sft", target, "search-proxy-", "loss")
    assert labels == ["search-proxy-00", "search-proxy-01"] and ys.tolist() == [1.0, 0.5]
    # losses on different scales: their geometric mean, where one dataset's halving counts as much as another's
    rows[0]["metrics"]["metrics/eval/sft.json"] = {"imdb": {"answer_loss": 0.01}, "sst2": {"answer_loss": 1.0}}
    assert search.observations(rows, names, "sft", target, "search-proxy-", "loss")[1][0] == pytest.approx(0.1)


@pytest.mark.parametrize("metric", ["score", "loss"])
def test_propose_writes_the_report(tmp_path, monkeypatch, metric):
    rng = np.random.default_rng(0)
    names = ["imdb", "sst2", "gsm8k"]
    rows = [{**_row("main", {"imdb": 0.4, "sst2": 0.4, "gsm8k": 0.2}, 0.8), "baseline": True}]
    for i, x in enumerate(rng.dirichlet(np.ones(3), 12)):
        rows.append(_row(f"search-proxy-{i:02d}", dict(zip(names, x.round(2), strict=True)),
                         float(0.9 - ((x - OPTIMUM) ** 2).sum())))
    rows.append(_row("search-full-proposal", dict(zip(names, OPTIMUM, strict=True)), 0.95))
    rows.append(_row("search-full-03", {"imdb": 0.1, "sst2": 0.1, "gsm8k": 0.8}, 0.6))
    params = yaml.safe_load(open("params.yaml"))
    params["search"]["target"] = ["imdb", "sst2"]
    params["search"]["metric"] = metric
    if metric == "score":  # proxies must generate to be scored
        params["search"]["proxy"].pop("evaluate.generate")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(search, "exp_show", lambda: [])
    monkeypatch.setattr(search, "experiments", lambda show: json.loads(json.dumps(rows)))
    search.main(["propose", "--out", "reports"])
    report = (tmp_path / "reports/mixture-search.md").read_text()
    assert "12 proxy runs" in report and "Spearman rank correlation" in report and "does not rank" not in report
    assert "dvc exp run -S mixture.imdb=" in report
    proxy_03 = next(row for row in rows if row["name"] == "search-proxy-03")["metrics"]["metrics/eval/sft.json"]
    ranking = report[report.index("## At full size"):report.index("## Proxy runs")].splitlines()
    if metric == "score":
        assert "mean held-out score (higher is better) of sft on imdb, sst2" in report
        assert ranking[6].startswith("| 1 | search-full-proposal | ") and ranking[6].endswith(" (predicted) |")
        assert "| 0.9500 | " in ranking[6]
        assert ranking[7] == "| 2 | baseline (params.yaml) | 0.40 | 0.40 | 0.20 | 0.8000 |  |"
        assert ranking[8] == (f"| 3 | search-full-03 | 0.10 | 0.10 | 0.80 | 0.6000 | "
                              f"{proxy_03['imdb']['accuracy']:.4f} |")
    else:  # ranked by loss, lowest first, with each run's mean score
        assert "geometric mean held-out answer loss (lower is better) of sft on imdb, sst2" in report
        assert ranking[6].startswith("| 1 | search-full-proposal | ") and ranking[6].endswith(" 0.9500 |")
        assert "| 0.1000 | " in ranking[6] and " (predicted) | " in ranking[6]
        assert ranking[7] == "| 2 | baseline (params.yaml) | 0.40 | 0.40 | 0.20 | 0.4000 |  | 0.8000 |"
        assert ranking[8] == (f"| 3 | search-full-03 | 0.10 | 0.10 | 0.80 | 0.8000 | "
                              f"{proxy_03['imdb']['answer_loss']:.4f} | 0.6000 |")
    assert (tmp_path / "reports/mixture-search.png").read_bytes()[:4] == b"\x89PNG"


def test_validate_names_the_proposal_by_its_weights_and_skips_what_ran(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(1)
    names = ["imdb", "sst2", "gsm8k"]
    rows = [_row(f"search-proxy-s0-{i:02d}", dict(zip(names, x.round(2), strict=True)),
                 float(0.9 - ((x - OPTIMUM) ** 2).sum())) for i, x in enumerate(rng.dirichlet(np.ones(3), 10))]
    best = max(rows, key=lambda row: row["metrics"]["metrics/eval/sft.json"]["imdb"]["accuracy"])["name"]
    rows.append(_row(best.replace("proxy", "full"), {"imdb": 1}, 0.9))  # the best proxy's mixture ran already
    params = yaml.safe_load(open("params.yaml"))
    params["search"]["target"] = ["imdb", "sst2"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(search, "exp_show", lambda: [])
    monkeypatch.setattr(search, "experiments", lambda show: json.loads(json.dumps(rows)))
    search.main(["validate", "--dry"])
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("dvc exp run")]
    queued = [line.split()[5] for line in commands]
    # the proposal and the baseline with 3 seeds each (the commit is the baseline's first), 2 of 3 sampled ones
    assert len(queued) == 7 and best.replace("proxy", "full") not in queued
    proposal = queued[0]
    assert proposal.startswith("search-full-s0-proposal-") and len(proposal.split("-")) == 7
    assert queued[1:5] == [f"{proposal}-r1", f"{proposal}-r2", "search-full-s0-baseline-r1",
                           "search-full-s0-baseline-r2"]
    assert commands[1].endswith(" -S sft.seed=43") and commands[2].endswith(" -S sft.seed=44")
    assert commands[3].endswith("evaluate@sft -S sft.seed=43")  # the baseline's mixture: params.yaml's
    assert f"at full size already: {best.replace('proxy', 'full')}" in out


def test_replicates_merge_into_one_observation_and_measure_the_seed_noise():
    xs = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    ys = np.array([1.0, 1.2, 1.4, 2.0, 3.0])
    labels = ["search-proxy-s0-00", "search-proxy-s0-00-r1", "search-proxy-s0-00-r2", "search-proxy-s0-01",
              "search-proxy-s0-02"]
    mx, my, names, (noise, runs) = search.merge_replicates(xs, ys, labels)
    assert names == ["search-proxy-s0-00", "search-proxy-s0-01", "search-proxy-s0-02"] and runs == 3
    assert my.tolist() == pytest.approx([1.2, 2.0, 3.0]) and mx.tolist() == [[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]]
    assert noise == pytest.approx(0.2)  # the standard deviation of 1.0, 1.2, 1.4
    assert search.signal_to_noise(my, noise) == pytest.approx(np.std([1.2, 2.0, 3.0], ddof=1) / 0.2)
    assert search.merge_replicates(xs[3:], ys[3:], labels[3:])[3] == (None, 0)
    assert search.replicate_overrides("grpo", 42, 2) == {"sft.seed": 44, "grpo.seed": 44}


def test_noise_section_warns_when_seeds_move_the_target_as_much_as_mixtures():
    quiet = "\n".join(search.noise_section(np.array([1.0, 2.0, 3.0]), (0.1, 3), "sft"))
    assert "Signal-to-noise: 10.00" in quiet and "probability 0.97" in quiet and "Too noisy" not in quiet
    noisy = "\n".join(search.noise_section(np.array([1.0, 1.1, 1.2]), (0.1, 3), "sft"))
    assert "Signal-to-noise: 1.00" in noisy and "probability 0.75" in noisy and "Too noisy to rank" in noisy
    assert "unknown" in "\n".join(search.noise_section(np.array([1.0, 2.0]), (None, 0), "sft"))


def test_sample_queues_replicates_of_the_first_proxy(tmp_path, monkeypatch, capsys):
    params = yaml.safe_load(open("params.yaml"))
    params["search"].update(proxies=4, replicates=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    search.main(["sample", "--dry"])
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("dvc exp run")]
    assert [c.split()[5] for c in commands] == [f"search-proxy-s0-0{i}" for i in range(4)] + [
        "search-proxy-s0-00-r1", "search-proxy-s0-00-r2"]
    first = commands[0].split(" -S ")
    assert commands[4].split(" -S ")[1:] == [*first[1:], f"sft.seed={params['seed'] + 1}"]  # same mixture, proxy


def test_validation_compares_the_proposal_with_the_baseline_over_seeds(monkeypatch):
    """The proposal's three full-size runs against the commit and the baseline's two replicates, paired by seed
    over the held-out rows of the target datasets (lancy.compare); a dataset outside the target is left out."""
    from lancy.results import task_results

    rng = np.random.default_rng(2)
    chance = rng.beta(0.5, 0.5, 300)

    def results(shift):
        import pyarrow as pa

        return pa.concat_tables([task_results(name, {
            "id": [f"{name}{i}" for i in range(300)], "tokens": [2] * 300, "nll": rng.gamma(2.0, 0.5, 300).tolist(),
            "score": (rng.random(300) < np.clip(chance + shift, 0, 1)).astype(float).tolist()})
            for name in ("imdb", "sst2", "gsm8k")])

    def row(name, sft_seed, baseline=False):
        return {"name": name, "rev": name, "baseline": baseline, "metrics": {"metrics/eval/sft.json": {}},
                "params": {"seed": 42, "sft.seed": sft_seed}}

    proposal, base = "search-full-s0-proposal-50-50-00", "search-full-s0-baseline"
    rows = [row("main", -1, baseline=True), row(f"{base}-r1", 43), row(f"{base}-r2", 44),
            row(proposal, -1), row(f"{proposal}-r1", 43), row(f"{proposal}-r2", 44)]
    tables = {r["name"]: results(0.4 if r["name"].startswith(proposal) else 0.0) for r in rows}
    monkeypatch.setattr("lancy.results.read_results", lambda model, rev=None: tables[rev])
    text = search.validation(rows, "sft", ["imdb", "sst2"], proposal, base)
    assert text.startswith(f"3 seeds of the baseline (A: params.yaml) against 3 of the proposal (B: {proposal})")
    lines = [line for line in text.splitlines() if line.startswith("| sft |")]
    loss = "answer_loss (lower is better)"
    assert [line.split(" | ")[1:3] for line in lines] == [["imdb", "accuracy"], ["imdb", loss], ["sst2", "accuracy"],
                                                         ["sst2", loss]]
    assert "proposal better" in lines[0] and lines[0].endswith("| 900 | 3 |")  # 300 shared rows x 3 seeds
    assert search.validation(rows[:3], "sft", ["imdb"], proposal, base) is None  # the proposal has not run
