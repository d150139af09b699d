"""Mixture search, RegMix-style: many small proxy runs on sampled mixtures, a regression of the held-out target
on the mixture weights, and the mixture it predicts best.

    python -m lancy.search sample        # queue search.proxies proxy experiments (then: dvc queue start);
                                         # another search.seed adds more, and propose uses them all
    python -m lancy.search propose       # fit, check, propose: reports/mixture-search.md and .png
    python -m lancy.search validate      # queue the proposal and the baseline at full size, 1 + search.replicates
                                         # seeds each, and a few sampled mixtures (those not run yet; a proposal
                                         # is named by its weights)

Sampling (RegMix, Liu et al. 2025): each proxy's weights over the datasets with a weight > 0 in `mixture` are
a draw from Dirichlet(scale x share), with share the current normalized weights and scale log-uniform in
[0.1, 5] x the number of datasets. Small scales give extreme mixtures; weights are rounded to two decimals,
so a source can get exactly 0. Every proxy also gets `search.proxy` (fewer SFT/GRPO steps, no generation),
which must leave pretraining's inputs alone, so all proxies reuse one pretrained model. Proxies and
full-size validation runs run only the stages `evaluate@<search.model>` needs (`dvc exp run <target>`): with
`search.model: sft` no GRPO runs, and their `dvc exp show` rows keep the baseline's grpo metrics.

Fitting: the target sums up `search.model`'s held-out results on the `search.target` datasets (they may have
weight 0: transfer). With `search.metric: loss` (the default) it is the geometric mean of their answer losses,
the reference completions' loss per token (lancy.evaluation.answer_loss; lower is better), as RegMix fits a
validation loss. The geometric mean weighs each dataset's relative change alike: an arithmetic one is ruled by
the dataset with the largest loss (math: about 1.4 per token at full size, where a learned label costs 0.005).
The loss needs no generation, so proxies skip it (`evaluate.generate: false` in `search.proxy`), and it moves
smoothly with the mixture where a small model's accuracy is near 0 or 1. With `search.metric: score` the target
is the mean headline score (lancy.evaluation.SCORES; higher is better).

Noise. `sample` also queues `search.replicates` more runs of the first proxy mixture that differ only in the
training seeds of the stages the search re-runs (`sft.seed`, and `grpo.seed` with `search.model: grpo`), so
that pretraining stays shared: their spread is the proxies' seed noise from SFT (and GRPO) training (data order,
sampling, adapters), not from pretraining or from which rows the data stages drew. The report sets it beside the
spread of the proxy targets over mixtures (a signal-to-noise ratio, as in "Signal and Noise", arXiv 2508.13144):
two proxies whose true targets are drawn with that spread are put in the right order with probability
1/2 + atan(ratio)/pi (0.75 at 1, 0.85 at 2), and the report warns below 2. Replicates are averaged into one
observation for the fit. At full size, `validate` runs the proposal and the baseline with 1 + `search.replicates`
seeds each (the baseline's first is the commit itself); `propose` then compares them per target dataset, paired
over the held-out rows and over the seeds (lancy.compare), with Holm-adjusted verdicts.

Two regressions from scikit-learn (ridge on the weights, and a Gaussian process) are each judged by their
leave-one-out predictions: Spearman rank correlation with the observed targets, and mean absolute error. The
better one searches the weight simplex: 100,000 seeded Dirichlet(1) points, and the proposal is the mean of the
100 best predicted (RegMix's top-k average).
"""
import argparse
import json
import math
import re
from pathlib import Path

import numpy as np

from lancy import params as P
from lancy.compare import exp_show, experiments
from lancy.errors import LancyError, run_stage

PROXY_PREFIX = "search-proxy-"
FULL_PREFIX = "search-full-"
BASELINE = "baseline (params.yaml)"
REPLICATE = re.compile(r"-r\d+$")  # a replicate's name: its mixture's run, then -r1, -r2, ...
# The seeds a replicate varies: those of the stages the search re-runs up to its model (pretraining stays shared).
STAGE_SEEDS = {"pretrain": (), "sft": ("sft.seed",), "grpo": ("sft.seed", "grpo.seed")}
NOISY = 2.0  # signal-to-noise below which the report warns: pairs of proxies ranked right under 85% of the time
# What a proxy may change: nothing pretraining reads, so every proxy reuses the same pretrained model.
PROXY_KEYS = ("sft.", "grpo.", "evaluate.", "mix.sft_rows", "mix.rl_rows")
SIMPLEX_POINTS = 100_000
TOP_K = 100


def sources(mixture: dict[str, float]) -> list[str]:
    """The datasets a search mixes: those with a weight > 0 in `mixture`, in params order."""
    return [name for name, weight in mixture.items() if weight > 0]


def sample_mixtures(mixture: dict[str, float], count: int, seed: int) -> list[dict[str, float]]:
    """`count` seeded Dirichlet mixtures around `mixture` (module docstring), rounded to two decimals."""
    names = sources(mixture)
    share = np.array([mixture[n] for n in names]) / sum(mixture[n] for n in names)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(count):
        scale = len(names) * np.exp(rng.uniform(np.log(0.1), np.log(5.0)))
        weights = np.round(rng.dirichlet(np.maximum(share * scale, 1e-3)), 2)
        if weights.sum() == 0:  # every weight rounded away: keep the largest draw
            weights[np.argmax(rng.dirichlet(share))] = 1.0
        draws.append({name: float(w) for name, w in zip(names, weights, strict=True)})
    return draws


def targets(target: list[str], mixture: dict[str, float]) -> list[str]:
    """The datasets of the target: `search.target`, or the searched ones when it is empty."""
    for name in target:
        if name not in mixture:
            raise LancyError(f"params key `search.target`: {name} is not in `mixture`, so it is not evaluated; "
                             f"add `mixture.{name}: 0` (weight 0: evaluated, not trained on)")
    return list(target) or sources(mixture)


def check_proxy(proxy: dict, metric: str, model: str = "sft", generate_pretrain: bool = False) -> None:
    """Refuse proxy overrides that would change pretraining, or leave a score target with no generated answers."""
    for key in proxy:
        if not key.startswith(PROXY_KEYS):
            raise LancyError(f"params key `search.proxy.{key}`: a proxy may only change {', '.join(PROXY_KEYS)} "
                             f"(anything else changes pretraining's inputs, and each proxy would pretrain again)")
    if metric == "score" and proxy.get("evaluate.generate") is False:
        raise LancyError("params key `search.proxy.evaluate.generate` is false, so proxies have no scores for "
                         "`search.metric: score`; remove it, or use `search.metric: loss`")
    if metric == "score" and model == "pretrain" and not proxy.get("evaluate.generate_pretrain", generate_pretrain):
        raise LancyError("params key `evaluate.generate_pretrain` is false, so the pretrained model has no scores for "
                         "`search.metric: score`; set it to true, or use `search.metric: loss`")


def lower_is_better(metric: str) -> bool:
    return metric == "loss"


def queue_commands(mixtures: list[dict], overrides: dict, names: list[str], model: str) -> list[list[str]]:
    """`dvc exp run --queue` commands, one per mixture: its weights and the overrides as -S, named. Each runs only
    what `evaluate@<model>` needs (the search reads nothing else: with model sft, no GRPO and no evaluate@grpo)."""
    return [["dvc", "exp", "run", "--queue", "-n", name, f"evaluate@{model}",
             *[arg for source, w in m.items() for arg in ("-S", f"mixture.{source}={w}")],
             *[arg for key, value in overrides.items() for arg in ("-S", f"{key}={json.dumps(value)}")]]
            for name, m in zip(names, mixtures, strict=True)]


def replicate_overrides(model: str, seed: int, k: int) -> dict:
    """The params of replicate k (1, 2, ...) of a run: the training seeds of the stages the search re-runs."""
    return {key: seed + k for key in STAGE_SEEDS[model]}


def merge_replicates(xs: np.ndarray, ys: np.ndarray, labels: list[str]):
    """Replicates (named <run>-r<k>) averaged into their run's observation for the fit; and the seed noise: the
    pooled standard deviation of the targets within runs that have replicates (None without any), with the
    number of runs that went into it."""
    stems = [REPLICATE.sub("", label) for label in labels]
    order = list(dict.fromkeys(stems))
    merged = [[i for i, s in enumerate(stems) if s == stem] for stem in order]
    squares, df = 0.0, 0
    for members in merged:
        if len(members) > 1:
            squares += float(((ys[members] - ys[members].mean()) ** 2).sum())
            df += len(members) - 1
    noise = (math.sqrt(squares / df), sum(len(m) for m in merged if len(m) > 1)) if df else (None, 0)
    return (np.array([xs[m[0]] for m in merged]), np.array([ys[m].mean() for m in merged]), order, noise)


def signal_to_noise(ys: np.ndarray, noise: float | None) -> float | None:
    """The spread of the targets over mixtures (standard deviation) over the seed noise."""
    return float(np.std(ys, ddof=1) / noise) if noise and len(ys) > 1 else None


def observations(rows: list[dict], names: list[str], model: str, target: list[str], prefix: str, metric: str):
    """(weights, targets, experiment names) of the finished experiments named `prefix`*: weights normalized over
    `names`; the target from `model`'s held-out results on the `target` datasets, the geometric mean of their
    answer losses (metric loss) or the mean of their headline scores (metric score)."""
    from lancy.evaluation import headline

    def value(result: dict):
        return result.get("answer_loss") if metric == "loss" else result[key] if (key := headline(result)) else None

    xs, ys, labels = [], [], []
    for row in rows:
        if not row["name"].startswith(prefix):
            continue
        weights = np.array([float(row["params"].get(f"mixture.{n}", 0.0)) for n in names])
        results = row["metrics"].get(f"metrics/eval/{model}.json", {})
        scores = [value(results.get(d, {})) for d in target]
        if weights.sum() <= 0 or None in scores:
            continue
        xs.append(weights / weights.sum())
        ys.append(float(np.exp(np.mean(np.log(np.maximum(scores, 1e-9)))) if metric == "loss" else np.mean(scores)))
        labels.append(row["name"])
    return np.array(xs), np.array(ys), labels


def regressions() -> dict:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.linear_model import Ridge

    return {
        "ridge": lambda: Ridge(alpha=1e-3),
        "gaussian process": lambda: GaussianProcessRegressor(
            ConstantKernel() * RBF(length_scale=0.5, length_scale_bounds=(0.05, 10)) + WhiteKernel(1e-3),
            normalize_y=True, n_restarts_optimizer=2, random_state=0),
    }


def leave_one_out(make, xs: np.ndarray, ys: np.ndarray) -> dict:
    """Spearman rank correlation and mean absolute error of each point's prediction by a fit without it."""
    from scipy.stats import spearmanr

    predictions = np.array([make().fit(np.delete(xs, i, 0), np.delete(ys, i)).predict(xs[i:i + 1])[0]
                            for i in range(len(xs))])
    rho = spearmanr(predictions, ys).statistic if np.ptp(ys) > 0 and np.ptp(predictions) > 0 else float("nan")
    return {"spearman": float(rho), "mae": float(np.abs(predictions - ys).mean()), "predictions": predictions}


def fit(xs: np.ndarray, ys: np.ndarray, seed: int = 0, lower: bool = False) -> dict:
    """Both regressions judged by leave-one-out; the better (rank correlation, then error) proposes the mixture
    with the highest predicted target (the lowest, with `lower`)."""
    if len(xs) < 4:
        raise LancyError(f"{len(xs)} finished proxy experiments; a fit needs at least 4 "
                         f"(python -m lancy.search sample, then dvc queue start)")
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # kernel bounds reached on a handful of points
        quality = {name: leave_one_out(make, xs, ys) for name, make in regressions().items()}
        best = max(quality, key=lambda n: (np.nan_to_num(quality[n]["spearman"], nan=-2), -quality[n]["mae"]))
        model = regressions()[best]().fit(xs, ys)
    points = np.random.default_rng(seed).dirichlet(np.ones(xs.shape[1]), SIMPLEX_POINTS)
    predicted = model.predict(points) * (-1 if lower else 1)
    top = points[np.argsort(predicted)[-TOP_K:]].mean(axis=0)
    proposal = np.round(top / top.sum(), 2)
    return {"quality": quality, "best": best, "model": model, "proposal": proposal,
            "predicted": float(model.predict(proposal[None] / proposal.sum())[0])}


def plot(names, xs, ys, result, path: Path, target_label: str) -> None:
    """One panel per source: observed targets against its weight, and the prediction along that weight with the
    other sources in the proposal's proportions; a last panel: leave-one-out predictions against observations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(names) + 1, figsize=(3.6 * (len(names) + 1), 3.4), squeeze=False)
    grid = np.linspace(0, 1, 51)
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=False)):
        rest = np.delete(result["proposal"], j)
        rest = rest / rest.sum() if rest.sum() > 0 else np.full(len(rest), 1 / max(1, len(rest)))
        line = np.array([np.insert(rest * (1 - w), j, w) for w in grid])
        ax.plot(grid, result["model"].predict(line), color="tab:blue", label=f"predicted ({result['best']})")
        ax.scatter(xs[:, j], ys, color="black", s=14, label="proxy runs")
        ax.axvline(result["proposal"][j] / result["proposal"].sum(), color="tab:red", ls="--", label="proposal")
        ax.set_xlabel(f"weight of {name}")
        ax.set_ylabel(target_label if j == 0 else "")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    ax = axes[0][-1]
    loo = result["quality"][result["best"]]
    ax.scatter(ys, loo["predictions"], s=14, color="black")
    ax.plot([ys.min(), ys.max()], [ys.min(), ys.max()], color="gray", lw=0.8)
    ax.set_xlabel("observed")
    ax.set_ylabel("leave-one-out prediction")
    ax.set_title(f"Spearman {loo['spearman']:.2f}", fontsize=9)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def describe(metric: str, model: str, target: list[str]) -> str:
    what = "geometric mean held-out answer loss (lower is better)" if lower_is_better(metric) else \
        "mean held-out score (higher is better)"
    return f"{what} of {model} on {', '.join(target)}"


def noise_section(ys: np.ndarray, noise: tuple, model: str) -> list[str]:
    """The report's lines on the proxies' seed noise against the spread of their targets."""
    sd, runs = noise
    keys = ", ".join(f"`{k}`" for k in STAGE_SEEDS[model]) or "nothing (pretraining: no replicates)"
    if sd is None:
        return ["## Noise", "", "No replicate of a proxy has finished (`search.replicates`), so the proxies' seed "
                "noise is unknown: nothing says whether their ranking is signal.", ""]
    ratio = signal_to_noise(ys, sd)
    lines = ["## Noise", "",
             f"Seed noise of one proxy: {sd:.4f} (standard deviation of the target over {runs} runs of one mixture "
             f"that differ in {keys}). Spread of the proxy targets over {len(ys)} mixtures: {np.std(ys, ddof=1):.4f}. "
             f"Signal-to-noise: {ratio:.2f}; two proxies are put in the order of their true targets with probability "
             f"{0.5 + math.atan(ratio) / math.pi:.2f}.", ""]
    if ratio < NOISY:
        lines += [f"**Too noisy to rank mixtures** (signal-to-noise under {NOISY:g}): the proxies' differences are "
                  "mostly seed noise. Give proxies more steps (`search.proxy`), evaluate more rows "
                  "(`data.test_rows`), or average replicates of every proxy.", ""]
    return lines


def report(p, names, target, xs, ys, labels, result, full: tuple, baseline: tuple, scores: dict,
           noise: tuple = (None, 0), validation: str | None = None) -> str:
    """The markdown report; `full` and `baseline`: observations() of the full-size runs and the baseline commit;
    `scores`: their mean held-out scores by run, shown next to a loss target; `noise`: merge_replicates' seed
    noise; `validation`: the paired comparison of the proposal and the baseline at full size (markdown)."""
    weights = " ".join(f"-S mixture.{n}={w:g}" for n, w in zip(names, result["proposal"], strict=True))
    lower = lower_is_better(p.search.metric)
    best = int(ys.argmin() if lower else ys.argmax())
    target = describe(p.search.metric, p.search.model, target)
    lines = [
        "# Mixture search", "",
        f"{len(xs)} proxy runs (`search.proxy`: {json.dumps(p.search.proxy)}); target: {target}.", "",
        "## Proposal", "",
        "| " + " | ".join(names) + " | predicted target | best proxy run |",
        "|" + "---|" * (len(names) + 2),
        "| " + " | ".join(f"{w:g}" for w in result["proposal"]) + f" | {result['predicted']:.4f} | "
        f"{ys[best]:.4f} ({labels[best]}) |", "",
        "Train it at full size (`python -m lancy.search validate` queues it with sampled mixtures to compare):", "",
        "```bash", f"dvc exp run {weights}", "```", "",
        "## Fit quality (leave-one-out over the proxy runs)", "",
        "| regression | Spearman rank correlation | mean absolute error |", "|---|---|---|",
        *[f"| {name}{' (used)' if name == result['best'] else ''} | {q['spearman']:.3f} | {q['mae']:.4f} |"
          for name, q in result["quality"].items()], "",
        *([] if result["quality"][result["best"]]["spearman"] > 0 else [
            "**The fit does not rank unseen runs** (leave-one-out rank correlation <= 0): do not trust the "
            "proposal. Add proxies (another `search.seed` adds runs), evaluate more rows, or choose a target "
            "that the proxies' settings can move.", ""]),
        "![observed proxy runs and the predicted target along each weight](mixture-search.png)", "",
        *noise_section(ys, noise, p.search.model),
    ]
    runs = list(zip(full[2], full[0], full[1], strict=True))
    if len(baseline[1]):
        runs.append((BASELINE, baseline[0][0], baseline[1][0]))
    proxy_targets = dict(zip(labels, ys, strict=True))

    def at_proxy_size(label: str, weights: np.ndarray) -> str:
        """A full-size run's proxy target; the fit's prediction, for a proposal (this fit's or an earlier one's);
        nothing for the baseline."""
        if "-proposal" in label:
            return f"{result['model'].predict(weights[None])[0]:.4f} (predicted)"
        proxy = proxy_targets.get(label.replace(FULL_PREFIX, PROXY_PREFIX))
        return "" if proxy is None else f"{proxy:.4f}"

    if full[2]:
        score = lower  # a loss target: each run's mean score too, what the loss stands in for
        lines += ["## At full size", "",
                  "Does the proxies' ranking carry over (RegMix's premise)? The proposal, full-size runs of sampled "
                  "mixtures and the baseline, by full-size target:", "",
                  "| rank | run | " + " | ".join(names) + " | full-size target | at proxy size |"
                  + (" full-size mean score |" if score else ""),
                  "|" + "---|" * (len(names) + 4 + score),
                  *[f"| {i + 1} | {label} | " + " | ".join(f"{w:.2f}" for w in x) + f" | {y:.4f} | "
                    f"{at_proxy_size(label, x)} |" + (f" {scores.get(label, float('nan')):.4f} |" if score else "")
                    for i, (label, x, y) in enumerate(sorted(runs, key=lambda run: run[2] if lower else -run[2]))],
                  ""]
    lines += ["## The proposal against the baseline at full size", "",
              validation or "Not run yet: `python -m lancy.search validate`, then `dvc queue start`.", ""]
    lines += ["## Proxy runs", "", "| experiment | " + " | ".join(names) + " | target |",
              "|" + "---|" * (len(names) + 2),
              *[f"| {label} | " + " | ".join(f"{w:.2f}" for w in x) + f" | {y:.4f} |"
                for label, x, y in zip(labels, xs, ys, strict=True)]]
    return "\n".join(lines) + "\n"


def _queue(commands: list[list[str]], dry: bool) -> None:
    """Each command printed, then run by DVC's command line in this process (one start of DVC for all of them,
    not a few seconds each)."""
    from dvc.cli import main as dvc

    for command in commands:
        print(" ".join(command), flush=True)
        if not dry and dvc(command[1:]) != 0:
            raise LancyError(f"`{' '.join(command)}` failed (its error is above)")


def runs_of(rows: list[dict], name: str) -> list[dict]:
    """The runs named `name` and its replicates (`name`-r1, ...)."""
    return [row for row in rows if REPLICATE.sub("", row["name"]) == name]


def baseline_runs(rows: list[dict], baseline: str) -> list[dict]:
    """The baseline's full-size runs: the commit itself and its replicates named `baseline`-r<k>."""
    return [row for row in rows if row["baseline"]][:1] + runs_of(rows, baseline)


def validation(rows: list[dict], model: str, target: list[str], proposal: str, baseline: str) -> str | None:
    """The proposal's full-size runs (named `proposal`, and its replicates) against the baseline's (the commit and
    the replicates named `baseline`): the paired, seed-aware comparison of `model` per target dataset
    (lancy.compare), or None before both have run."""
    from lancy.compare import comparison_table, comparisons, judge, load_runs, matched

    base, prop = {"runs": baseline_runs(rows, baseline)}, {"runs": runs_of(rows, proposal)}
    if not base["runs"] or not prop["runs"]:
        return None
    found = comparisons(load_runs(base, (model,)), load_runs(prop, (model,)), matched(base, prop),
                        ("baseline", "proposal"), [(model, model)])
    found = judge([row for row in found if row["dataset"] in target])
    return (f"{len(base['runs'])} seeds of the baseline (A: params.yaml) against {len(prop['runs'])} of the "
            f"proposal (B: {proposal}), {model} on the target datasets; paired over the held-out rows of runs "
            f"with the same seeds, over seeds, Holm-adjusted (lancy.compare):\n\n" + comparison_table(found))


def merged(rows, names, model, target, prefix, metric):
    """observations() with replicates averaged into their run's (merge_replicates)."""
    return merge_replicates(*observations(rows, names, model, target, prefix, metric))[:3]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("sample", "propose", "validate"))
    parser.add_argument("--dry", action="store_true", help="sample/validate: print the commands, queue nothing")
    parser.add_argument("--runs", type=int, default=3, help="validate: sampled mixtures run at full size")
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    p = P.load(("seed", "mixture", "evaluate.generate_pretrain", "search"))
    check_proxy(p.search.proxy, p.search.metric, p.search.model, p.evaluate.generate_pretrain)
    names = sources(p.mixture)
    target = targets(p.search.target, p.mixture)
    model, metric, seeds = p.search.model, p.search.metric, range(1, p.search.replicates + 1)
    replicas = [replicate_overrides(model, p.seed, k) for k in seeds] if STAGE_SEEDS[model] else []
    if args.command == "sample":
        mixtures = sample_mixtures(p.mixture, p.search.proxies, p.search.seed)
        names_ = [f"{PROXY_PREFIX}s{p.search.seed}-{i:02d}" for i in range(len(mixtures))]  # a new seed adds runs
        commands = queue_commands(mixtures, p.search.proxy, names_, model)
        commands += [command for k, seeds_k in enumerate(replicas, 1)  # the first proxy again: its seed noise
                     for command in queue_commands(mixtures[:1], {**p.search.proxy, **seeds_k},
                                                   [f"{names_[0]}-r{k}"], model)]
        _queue(commands, args.dry)
        print(f"queued {p.search.proxies} proxies and {len(replicas)} replicates; run them with `dvc queue start`, "
              f"then `python -m lancy.search propose`")
        return
    rows = experiments(exp_show())
    xs, ys, labels, noise = merge_replicates(*observations(rows, names, model, target, PROXY_PREFIX, metric))
    result = fit(xs, ys, p.search.seed, lower_is_better(metric))
    weights = "-".join(f"{w * 100:02.0f}" for w in result["proposal"])  # e.g. search-full-s0-proposal-34-65-00
    proposal = f"{FULL_PREFIX}s{p.search.seed}-proposal-{weights}"
    baseline = f"{FULL_PREFIX}s{p.search.seed}-baseline"
    if args.command == "validate":
        picks = np.argsort(ys)[np.linspace(0, len(ys) - 1, args.runs).round().astype(int)]  # low .. high
        mixture = dict(zip(names, result["proposal"].tolist(), strict=True))
        runs = [(mixture, proposal, {})] + [(mixture, f"{proposal}-r{k}", r) for k, r in enumerate(replicas, 1)]
        runs += [({}, f"{baseline}-r{k}", r) for k, r in enumerate(replicas, 1)]  # its first seed: the commit
        runs += [(dict(zip(names, xs[i].round(2).tolist(), strict=True)),
                  f"{FULL_PREFIX}{labels[i].removeprefix(PROXY_PREFIX)}", {}) for i in picks]
        done = {row["name"] for row in rows}  # run already (proposals are named by their weights): not again
        todo = [run for run in runs if run[1] not in done]
        print(f"at full size already: {', '.join(sorted(done.intersection(r[1] for r in runs))) or 'none'}")
        _queue([command for m, label, r in todo for command in queue_commands([m], r, [label], model)], args.dry)
        return
    full = merged(rows, names, model, target, FULL_PREFIX, metric)
    keep = [i for i, label in enumerate(full[2]) if label != baseline]  # the baseline's replicates: in its row
    full = (full[0][keep], full[1][keep], [full[2][i] for i in keep])
    baseline_rows = baseline_runs(rows, baseline)
    base_xs, base_ys, _ = observations(baseline_rows, names, model, target, "", metric)
    base = (base_xs[:1], base_ys.mean(keepdims=True)) if len(base_ys) else (base_xs, base_ys)
    _, full_scores, full_labels = merged(rows, names, model, target, FULL_PREFIX, "score")
    scores = dict(zip(full_labels, full_scores, strict=True))
    base_scores = observations(baseline_rows, names, model, target, "", "score")[1]
    scores[BASELINE] = float(base_scores.mean()) if len(base_scores) else float("nan")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(names, xs, ys, result, out / "mixture-search.png", f"{model} {metric} on {'+'.join(target)}")
    text = report(p, names, target, xs, ys, labels, result, full, base, scores, noise,
                  validation(rows, model, target, proposal, baseline))
    (out / "mixture-search.md").write_text(text)
    print(text)


if __name__ == "__main__":
    run_stage(main)
