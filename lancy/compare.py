"""Experiments compared, with the noise of every difference: `python -m lancy.compare` writes reports/compare.md,
reports/compare.png (scores against the swept parameter) and reports/compare-differences.png (each difference
with its 95% interval).

    dvc exp run --queue -S 'mixture.imdb=0.2,0.5,0.8' && dvc queue start   # a sweep (docs/experiments.md)
    dvc exp run --queue -S seed=1,2                                        # replicates of the baseline
    python -m lancy.compare                     # every group of HEAD's finished experiments against the baseline's
    python -m lancy.compare exp-a exp-b         # only these experiments (names or revisions); the first is A
    python -m lancy.compare --models sft grpo   # in each group, model grpo against model sft on the same rows
    python -m lancy.compare --x mixture.imdb    # the parameter on the picture's x axis

Experiments that differ only in seeds (`seed`, `pretrain.seed`, `sft.seed`, `grpo.seed`) are one **group**:
replicates of one configuration. Two groups (or two models) are compared per model and dataset on the headline
metric (accuracy, exact match, pass@1, token F1) and on the answer loss (per token; a corpus: its windows' loss
per token, the log of the perplexity), from the per-row results of each run (lancy.results, read from the DVC
cache). Runs of the two groups with the same seeds evaluate the same held-out rows, so each such pair is
compared row by row (paired bootstrap interval, McNemar for right/wrong rows), and the pairs are combined over
seeds with an interval that holds both the rows' and the seeds' noise (lancy.stats). Groups with no seeds in
common are compared over their seeds, unpaired. Every comparison states its minimum detectable difference (80%
power, 5%), and the verdict (A better, B better, no detectable difference) uses Holm-adjusted p-values over all
comparisons of the table, so the table as a whole has at most a 5% chance of one false "better".

It reads `dvc exp show --json` (params and metrics of each experiment, from git and the DVC cache).
"""
import argparse
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

from lancy.errors import LancyError, run_stage

MODELS = ("pretrain", "sft", "grpo")
SEEDS = ("seed", "pretrain.seed", "sft.seed", "grpo.seed")  # what replicates may vary


def exp_show() -> list[dict]:
    """`dvc exp show --json` of the repository in the working directory."""
    result = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        raise LancyError(f"`dvc exp show --json` failed: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)


def experiments(show: list[dict], names: list[str] | None = None) -> list[dict]:
    """The baseline commit and its finished experiments from `dvc exp show --json`, as flat rows:
    {"name", "rev", "baseline" (the commit itself), "params": {"mixture.imdb": 0.4, ...}, "metrics": {path: data}}.
    Queued, running and failed experiments are left out; `names` (experiment names or revision prefixes) selects,
    in the order named."""
    rows = []
    for commit in show:
        if commit["rev"] == "workspace":
            continue
        states = [commit] + [state for group in commit.get("experiments") or []
                             if (group.get("executor") or {}).get("state", "success") == "success"
                             for state in group["revs"]]
        for state in states:
            data = state.get("data") or {}
            if state.get("error") or not data.get("metrics"):
                continue
            rows.append({"name": state.get("name") or state["rev"][:7], "rev": state["rev"],
                         "baseline": state is commit,
                         "params": _flat({path: file.get("data", {}) for path, file in data["params"].items()}
                                         .get("params.yaml", {})),
                         "metrics": {path: file.get("data", {}) for path, file in data["metrics"].items()}})
    if names:
        def named(row, n):
            return row["name"] == n or row["rev"].startswith(n)

        missing = [n for n in names if not any(named(row, n) for row in rows)]
        if missing:
            raise LancyError(f"no finished experiment named {', '.join(missing)}; `dvc exp show` lists them")
        rows = [next(row for row in rows if named(row, n)) for n in dict.fromkeys(names)]
    return rows


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def varying(rows: list[dict], seeds: bool = True) -> list[str]:
    """The parameters whose values differ between the rows (a key missing from a row counts as differing);
    without `seeds`, the seed keys (SEEDS) are left out."""
    keys = sorted({key for row in rows for key in row["params"]} - (set() if seeds else set(SEEDS)))
    return [key for key in keys if len({json.dumps(row["params"].get(key)) for row in rows}) > 1]


def seeds_of(row: dict) -> tuple:
    """The seeds a run used: the run's seed and each training stage's (-1 there: the run's)."""
    seed = row["params"].get("seed")
    stages = [row["params"].get(key, -1) for key in SEEDS[1:]]
    return (seed, *(seed if s is None or s < 0 else s for s in stages))


def groups(rows: list[dict]) -> list[dict]:
    """Experiments that differ only in seeds, in order of first appearance: {"name", "runs", "params"}, named by
    the parameters that set them apart from the others (the baseline's group: after the baseline)."""
    found: dict[str, list[dict]] = {}
    for row in rows:
        key = json.dumps({k: v for k, v in row["params"].items() if k not in SEEDS}, sort_keys=True)
        found.setdefault(key, []).append(row)
    apart = varying(rows, seeds=False)
    named = []
    for runs in found.values():
        label = ", ".join(f"{k}={runs[0]['params'].get(k)}" for k in apart)
        base = next((r["name"] for r in runs if r["baseline"]), None)
        name = base or label or runs[0]["name"]
        named.append({"name": name + (f" ({len(runs)} seeds)" if len(runs) > 1 else ""), "runs": runs,
                      "params": {k: runs[0]["params"].get(k) for k in apart}})
    return named


# ---------------------------------------------------------------------------------------- per-row comparisons

def _frame(table):
    """A results table as a DataFrame indexed by (dataset, id, occurrence): held-out sets may repeat a text."""
    frame = table.to_pandas()
    frame["occurrence"] = frame.groupby(["dataset", "id"]).cumcount()
    return frame.set_index(["dataset", "id", "occurrence"])


def measures(dataset: str) -> list[tuple[str, bool]]:
    """(measure, lower is better) of a dataset: its headline metric and its answer loss; a corpus: its loss."""
    from lancy.catalog import CATALOG
    from lancy.evaluation import metric_of

    task = CATALOG[dataset].task if dataset in CATALOG else "corpus"
    return [("loss", True)] if task == "corpus" else [(metric_of(task), False), ("answer_loss", True)]


def _columns(frame, measure: str):
    """(x, w) of a measure over a frame's rows that have it (w None for a mean)."""
    if measure.endswith("loss"):
        kept = frame[frame["tokens"] > 0]
        return kept["nll"].to_numpy(float), kept["tokens"].to_numpy(float), kept.index
    kept = frame[frame["score"].notna()]
    return kept["score"].to_numpy(float), None, kept.index


def paired_runs(a, b, dataset: str, measure: str, seed: int = 0):
    """The paired Estimate (A - B) of one measure over the rows both results tables have, or None."""
    from lancy.stats import paired

    if dataset not in a.index.get_level_values(0) or dataset not in b.index.get_level_values(0):
        return None
    xa, wa, rows_a = _columns(a.loc[[dataset]], measure)
    xb, wb, rows_b = _columns(b.loc[[dataset]], measure)
    shared = rows_a.intersection(rows_b, sort=False)
    if len(shared) < 2:
        return None
    pick_a, pick_b = rows_a.get_indexer(shared), rows_b.get_indexer(shared)
    return paired(xa[pick_a], xb[pick_b], None if wa is None else wa[pick_a], None if wb is None else wb[pick_b],
                  seed=seed)


def _alone(frame, dataset: str, measure: str):
    """One run's measure as an Estimate of itself (for groups without shared rows)."""
    from lancy.stats import Estimate, ratio, standard_error

    x, w, _ = _columns(frame.loc[[dataset]], measure)
    return Estimate(ratio(x, w), math.nan, math.nan, math.nan, standard_error(x, w), len(x)) if len(x) > 1 else None


def compare_pairs(pairs: list[tuple], dataset: str, measure: str, lone: tuple[list, list] = ((), ())):
    """One Estimate (A - B) over runs: `pairs` of results frames of runs with the same seeds (combined over seeds),
    else, when no pair shares rows, the two groups' lone frames compared unpaired (lancy.stats)."""
    from lancy.stats import combine, difference_of_groups

    estimates = [e for i, (a, b) in enumerate(pairs) if (e := paired_runs(a, b, dataset, measure, seed=i))]
    if estimates:
        return combine(estimates)
    alone = [[e for frame in side if (e := _alone(frame, dataset, measure))] for side in lone]
    return difference_of_groups(*alone) if all(alone) else None


def value(frames: list, dataset: str, measure: str) -> float | None:
    """The mean over runs of a measure (each run's ratio over its rows)."""
    from lancy.stats import ratio

    values = [ratio(*_columns(f.loc[[dataset]], measure)[:2]) for f in frames if dataset in f.index.get_level_values(0)]
    return sum(values) / len(values) if values else None


def comparisons(runs_a: list[dict], runs_b: list[dict], matched: list[tuple[int, int]], names: tuple[str, str],
                models: list[tuple[str, str]]) -> list[dict]:
    """Every (model, dataset, measure) of two sides. `runs_a`, `runs_b`: per run, {model: results frame};
    `matched`: index pairs of runs with the same seeds; `models`: (model of A, model of B) pairs, the same model
    for two groups, two models for one group. One dict per comparison, with its Estimate (A - B)."""
    rows = []
    for model_a, model_b in models:
        frames_a = [run[model_a] for run in runs_a if model_a in run]
        frames_b = [run[model_b] for run in runs_b if model_b in run]
        if not frames_a or not frames_b:
            continue
        pairs = [(runs_a[i][model_a], runs_b[j][model_b]) for i, j in matched
                 if model_a in runs_a[i] and model_b in runs_b[j]]
        datasets = sorted(set(frames_a[0].index.get_level_values(0)) & set(frames_b[0].index.get_level_values(0)))
        for dataset in datasets:
            for measure, lower in measures(dataset):
                estimate = compare_pairs(pairs, dataset, measure, (frames_a, frames_b))
                if estimate is not None:
                    rows.append({"model": model_a if model_a == model_b else f"{model_a} / {model_b}",
                                 "dataset": dataset, "measure": measure, "lower": lower, "names": names,
                                 "a": value(frames_a, dataset, measure), "b": value(frames_b, dataset, measure),
                                 "estimate": estimate})
    return rows


def judge(rows: list[dict]) -> list[dict]:
    """Holm-adjusted p-values over all the rows (one family) and each row's verdict."""
    from lancy.stats import holm, verdict

    for row, p in zip(rows, holm([r["estimate"].p for r in rows]), strict=True):
        row["p_holm"] = p
        row["verdict"] = verdict(row["estimate"], p, row["lower"], row["names"])
    return rows


# ----------------------------------------------------------------------------------------------------- report

def _signed(x: float) -> str:
    return f"{0.0 if abs(x) < 1e-12 else x:+.3g}"  # float sums of equal terms: 3.7e-17 is 0


def _number(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.{digits}g}"


def comparison_table(rows: list[dict]) -> str:
    """Markdown: one line per comparison, A - B with its interval, p-values, verdict and what is detectable."""
    lines = ["| model | dataset | measure | A | B | A - B [95% interval] | p | p (Holm) | verdict | detectable | "
             "rows | seeds |", "|" + "---|" * 12]
    for r in rows:
        e = r["estimate"]
        interval = f"{_signed(e.difference)} [{_signed(e.low)}, {_signed(e.high)}]"
        lines.append(f"| {r['model']} | {r['dataset']} | {r['measure']}{' (lower is better)' if r['lower'] else ''} "
                     f"| {_number(r['a'])} | {_number(r['b'])} | {interval} | {_number(e.p, 2)} "
                     f"| {_number(r['p_holm'], 2)} | {r['verdict']} | {_number(e.mde, 2)} "
                     f"| {e.rows} | {e.seeds} |")
    return "\n".join(lines) + "\n"


def details(row: dict, models=MODELS) -> dict:
    """{model: its metrics/eval/<model>_details.json} of an experiment's run, for the models it evaluated: the
    standard errors and counts, which are outputs but not top-level metrics (`dvc exp show` leaves them out),
    read at the run's revision from git and the DVC cache. A model whose file cannot be read (a run made before
    the details were split off, or outputs not pulled) gets {}: its table shows no standard errors."""
    from dvc.api import DVCFileSystem

    evaluated = [model for model in models if f"metrics/eval/{model}.json" in row["metrics"]]
    if not evaluated:
        return {}
    found = {}
    try:
        fs = DVCFileSystem(".", rev=row["rev"])
    except Exception:  # dvc raises many kinds for an unknown revision
        return {model: {} for model in evaluated}
    for model in evaluated:
        try:
            found[model] = json.loads(fs.read_text(f"metrics/eval/{model}_details.json"))
        except Exception:  # missing from the revision, or its output not in the cache
            found[model] = {}
    return found


def overview(rows: list[dict]) -> tuple[list[str], list[list]]:
    """Header and rows of the experiments' table: name, the varying params, each model's headline metric per
    dataset with its standard error over rows (from the run's details), perplexities, and each source's share of
    SFT tokens."""
    from lancy.evaluation import headline

    params = varying(rows)
    columns: dict[str, None] = {}
    values = []
    for row in rows:
        cells, errors = {}, details(row)
        for model in MODELS:
            for dataset, result in sorted(row["metrics"].get(f"metrics/eval/{model}.json", {}).items()):
                key = headline(result) or ("perplexity" if result.get("perplexity") is not None else None)
                if key:
                    se = errors.get(model, {}).get(dataset, {}).get(f"{key}_se")
                    cells[f"{model} {dataset} {key}"] = (result[key], se)
        for source, share in sorted(row["metrics"].get("metrics/sft_shares.json", {}).items()):
            cells[f"SFT share {source}"] = (share, None)
        columns.update(dict.fromkeys(cells))
        values.append(cells)
    header = ["experiment", *params, *columns]
    body = [[row["name"], *(row["params"].get(p) for p in params), *(cells.get(c) for c in columns)]
            for row, cells in zip(rows, values, strict=True)]
    return header, body


def group_table(found: list[dict], rows: list[dict], header: list[str], body: list[list]) -> str:
    """Markdown: per group, each overview column's mean over its runs (seeds) and, with several, the spread
    between seeds (their standard deviation): how much a seed moves each number."""
    import numpy as np

    columns = [i for i, name in enumerate(header) if name != "experiment" and name not in varying(rows)]
    lines = ["| group | seeds | " + " | ".join(header[i] for i in columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for group in found:
        picked = [body[rows.index(run)] for run in group["runs"]]
        cells = []
        for i in columns:
            values = [row[i][0] for row in picked if row[i] and row[i][0] is not None]
            sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
            spread = "" if sd is None else f" (sd {0.0 if sd < 1e-12 else sd:.2g})"  # equal floats: 1e-16 is 0
            cells.append(_number(float(np.mean(values))) + spread if values else "")
        lines.append(f"| {group['name']} | {len(picked)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(header: list[str], body: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, tuple):
            number, se = value
            return _number(number) + (f" ± {se:.2g}" if se else "")
        return _number(value) if isinstance(value, float) else "" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(header: list[str], body: list[list], x: str | None, path: Path) -> None:
    """Each model's held-out scores against the swept parameter (or side by side): every run with +- 1.96
    standard errors, and a line through the mean of the runs (seeds) at each value."""
    import numpy as np

    plt = _pyplot()
    numeric = x in header and all(isinstance(row[header.index(x)], (int, float)) for row in body)
    order = sorted(range(len(body)), key=lambda i: body[i][header.index(x)]) if numeric else range(len(body))
    xs = [body[i][header.index(x)] if numeric else i for i in order]
    panels = [(m, [c for c in header if c.startswith(f"{m} ") and not c.endswith("perplexity")]) for m in MODELS]
    panels.append(("SFT token share", [c for c in header if c.startswith("SFT share ")]))
    panels = [(title, cols) for title, cols in panels if cols]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, cols) in zip(axes[0], panels, strict=True):
        for column in cols:
            cells = [body[i][header.index(column)] or (math.nan, None) for i in order]
            ys = [c[0] if c[0] is not None else math.nan for c in cells]
            errors = [1.96 * c[1] if c[1] else 0.0 for c in cells]
            label = column.removeprefix("SFT share ") if title == "SFT token share" else column.split(" ")[1]
            runs = ax.errorbar(xs, ys, yerr=errors, fmt="o", capsize=3, alpha=0.6, label=label)
            at = sorted(set(xs))
            ax.plot(at, [np.nanmean([y for x_, y in zip(xs, ys, strict=True) if x_ == x]) for x in at],
                    color=runs[0].get_color())
        ax.set_title(title if title == "SFT token share" else f"{title}: held-out score (±1.96 SE)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(x if numeric else "experiment")
        if not numeric:
            ax.set_xticks(xs, [body[i][0] for i in order], rotation=30, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_differences(sections: list[tuple[str, list[dict]]], path: Path) -> None:
    """Every comparison's difference with its 95% interval: per comparison of two sides, a panel of headline
    scores (A - B) and one of losses (B - A, so that right is better for A in both); filled red where the
    (Holm-adjusted) test finds a difference, hollow grey where it does not."""
    plt = _pyplot()
    panels = [(f"{title}: {kind}", [r for r in rows if r["lower"] == (kind == "losses")])
              for title, rows in sections for kind in ("scores", "losses")]  # a row of two panels per section
    height = max(len(rows) for _, rows in panels) * 0.3 + 1.5
    figure, axes = plt.subplots(len(sections), 2, figsize=(11, height * len(sections)), squeeze=False)
    for ax, (title, rows) in zip(axes.flat, panels, strict=True):
        if not rows:
            ax.set_visible(False)
            continue
        for i, r in enumerate(reversed(rows)):
            e, sign = r["estimate"], -1 if r["lower"] else 1
            low, high = sorted((sign * e.low, sign * e.high))
            found = r["verdict"] != "no detectable difference"
            ax.errorbar([sign * e.difference], [i], xerr=[[sign * e.difference - low], [high - sign * e.difference]],
                        fmt="o", color="tab:red" if found else "tab:gray", mfc=None if found else "white", capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(rows)), [f"{r['model']} {r['dataset']} {r['measure']}" for r in reversed(rows)],
                      fontsize=7)
        ax.set_title(textwrap.fill(title, 60), fontsize=8)
        ax.set_xlabel("B - A (loss): A better →" if rows[0]["lower"] else "A - B: A better →")
        ax.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def load_runs(group: dict, models=MODELS) -> list[dict]:
    """Per run of a group: {model: results frame} for each model whose results the run has."""
    from lancy.results import read_results

    runs = []
    for row in group["runs"]:
        frames = {}
        for model in models:
            if f"metrics/eval/{model}.json" in row["metrics"]:
                frames[model] = _frame(read_results(model, row["rev"]))
        runs.append(frames)
    return runs


def identical(runs_a: list[dict], runs_b: list[dict], pairs: list[tuple[int, int]], model: str) -> bool:
    """Whether a model's per-row results are the same in every pair of runs (every run of A against every run of
    B, without pairs): a stage both groups share (pretraining under a mixture change), nothing to compare."""
    pairs = pairs or [(i, j) for i in range(len(runs_a)) for j in range(len(runs_b))]
    return bool(pairs) and all(model in runs_a[i] and model in runs_b[j] and runs_a[i][model].equals(runs_b[j][model])
                               for i, j in pairs)


def matched(a: dict, b: dict) -> list[tuple[int, int]]:
    """Index pairs of the runs of groups a and b that used the same seeds (so evaluated the same rows)."""
    seeds_b = {seeds_of(row): j for j, row in enumerate(b["runs"])}
    return [(i, seeds_b[s]) for i, row in enumerate(a["runs"]) if (s := seeds_of(row)) in seeds_b]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiment names or revisions (default: all finished ones)")
    parser.add_argument("--models", nargs=2, metavar=("A", "B"), choices=MODELS,
                        help="compare model B against model A within each group, instead of groups against A's")
    parser.add_argument("--x", help="the parameter on the x axis (default: the one numeric parameter that varies)")
    parser.add_argument("--out", default="reports", help="folder for compare.md and the pictures")
    args = parser.parse_args(argv)
    rows = experiments(exp_show(), args.names)
    found = groups(rows)
    if len(rows) < 2 and not args.models:
        raise LancyError("fewer than two finished experiments to compare; run a sweep first, e.g. "
                         "dvc exp run --queue -S 'mixture.imdb=0.2,0.8' && dvc queue start")
    params = varying(rows)
    x = args.x or next((p for p in varying(rows, seeds=False)
                        if all(isinstance(r["params"].get(p), (int, float)) for r in rows)), None)
    if args.x and args.x not in params:
        raise LancyError(f"--x {args.x} does not differ between the experiments; these do: {', '.join(params)}")
    sections = []
    if args.models:  # within each group: model B against model A, on the same rows of each run
        a, b = args.models
        for group in found:
            runs = load_runs(group, args.models)
            sections.append((f"{group['name']}: {a} (A) against {b} (B)",
                             comparisons(runs, runs, [(i, i) for i in range(len(runs))], (a, b), [(a, b)])))
    else:  # every other group against the reference: the baseline's group, or the first named experiment's
        baseline = [g for g in found if any(r["baseline"] for r in g["runs"])]
        reference = found[0] if args.names or not baseline else baseline[0]
        runs = [load_runs(g) for g in found]
        base = runs[found.index(reference)]
        for group, group_runs in zip(found, runs, strict=True):
            if group is not reference:
                pairs = matched(reference, group)
                same = [m for m in MODELS if identical(base, group_runs, pairs, m)]
                sections.append((f"{reference['name']} (A) against {group['name']} (B)"
                                 + (f" ({', '.join(same)}: the same results, a shared stage)" if same else ""),
                                 comparisons(base, group_runs, pairs, (reference["name"], group["name"]),
                                             [(m, m) for m in MODELS if m not in same])))
    judge([row for _, section in sections for row in section])  # one family: Holm over every comparison
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header, body = overview(rows)
    plot(header, body, x, out / "compare.png")
    if any(section for _, section in sections):
        plot_differences([s for s in sections if s[1]], out / "compare-differences.png")
    command = f"python -m lancy.compare{''.join(' ' + a for a in (argv if argv is not None else sys.argv[1:]))}"
    text = [f"# Experiments compared\n\n`{command}` from `dvc exp show --json` and the runs' per-row results "
            f"(data/results): {len(rows)} experiments in {len(found)} groups (experiments that differ only in "
            f"seeds are replicates).\n",
            "## Differences\n\nA - B per model, dataset and measure: the mean over seeds, its 95% interval (paired "
            "over the same held-out rows, and over seeds where there are several), the p-value and its Holm "
            "adjustment over every line below, the verdict at 5%, and the smallest difference these rows and "
            "seeds detect with 80% power. Losses: lower is better.\n",
            "![differences with their 95% intervals](compare-differences.png)\n" if sections else ""]
    for title, section in sections:
        text += [f"### {title}\n", comparison_table(section) if section else "No shared results.\n"]
    text += ["## Groups\n\nEach group's mean over its runs, and the spread between its seeds (standard "
             "deviation).\n", group_table(found, rows, header, body),
             f"## Experiments\n\nEach score ± its standard error over the rows evaluated.\n\n"
             f"![held-out scores against {x or 'experiment'}](compare.png)\n", markdown(header, body)]
    (out / "compare.md").write_text("\n".join(text))
    for title, section in sections:
        print(f"\n{title}\n" + comparison_table(section))
    print(f"wrote {out / 'compare.md'} and its pictures ({len(rows)} experiments, {len(found)} groups)")


if __name__ == "__main__":
    run_stage(main)
