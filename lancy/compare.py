"""Experiments side by side: `python -m lancy.compare` writes reports/compare.md and reports/compare.png.

    dvc exp run --queue -S 'mixture.imdb=0.2,0.5,0.8' && dvc queue start   # a sweep (README: Experiments)
    python -m lancy.compare                     # the baseline and every finished experiment of HEAD
    python -m lancy.compare exp-a exp-b         # only these (names or revisions)
    python -m lancy.compare --x mixture.imdb    # the parameter on the picture's x axis

It reads `dvc exp show --json` (params and metrics of each experiment, from git and the DVC cache). The table
has one row per experiment: the parameters that differ between the rows, the held-out score of each model
(pretrain, sft, grpo) on each dataset (its task's headline metric, lancy.evaluation.SCORES), the perplexity on
each corpus, and each source's share of SFT tokens (the mixture actually trained on). The picture draws each
model's scores against the swept parameter, one line per dataset, with the SFT shares in a last panel. Without
a numeric parameter that differs, experiments are placed side by side.
"""
import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from lancy.errors import LancyError, run_stage

MODELS = ("pretrain", "sft", "grpo")
SHARES = ("accuracy", "exact_match", "pass_at_1")  # headline scores that are a share of right/wrong rows


class Score(float):
    """A held-out score that is the share of `rows` rows answered right: a float that knows its 95% interval."""

    def __new__(cls, value: float, rows: int):
        score = super().__new__(cls, value)
        score.rows = rows
        return score

    def interval(self) -> tuple[float, float]:
        """Wilson's 95% score interval: where the model's true share lies, given this many held-out rows. Unlike
        p +- 1.96 sd it stays inside [0, 1] and is not empty at 0 or 1 right."""
        z, n, p = 1.96, self.rows, float(self)
        center, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return max(0.0, (center - spread) / (1 + z * z / n)), min(1.0, (center + spread) / (1 + z * z / n))


def exp_show() -> list[dict]:
    """`dvc exp show --json` of the repository in the working directory."""
    result = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        raise LancyError(f"`dvc exp show --json` failed: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)


def experiments(show: list[dict], names: list[str] | None = None) -> list[dict]:
    """The baseline commit and its finished experiments from `dvc exp show --json`, as flat rows:
    {"name", "rev", "baseline" (the commit itself), "params": {"mixture.imdb": 0.4, ...}, "metrics": {path: data}}.
    Queued, running and failed experiments are left out; `names` (experiment names or revision prefixes) selects."""
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
        rows = [row for row in rows if any(row["name"] == n or row["rev"].startswith(n) for n in names)]
        missing = [n for n in names if not any(row["name"] == n or row["rev"].startswith(n) for row in rows)]
        if missing:
            raise LancyError(f"no finished experiment named {', '.join(missing)}; `dvc exp show` lists them")
    return rows


def _flat(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def varying(rows: list[dict]) -> list[str]:
    """The parameters whose values differ between the rows (a key missing from a row counts as differing)."""
    keys = sorted({key for row in rows for key in row["params"]})
    return [key for key in keys if len({json.dumps(row["params"].get(key)) for row in rows}) > 1]


def table(rows: list[dict]) -> tuple[list[str], list[list]]:
    """Header and rows: experiment, the varying params, `<model> <dataset> <metric>` scores and perplexities, and
    `SFT share <source>`."""
    from lancy.evaluation import headline

    params = varying(rows)
    columns: dict[str, None] = {}
    values = []
    for row in rows:
        cells = {}
        for model in MODELS:
            for dataset, result in sorted(row["metrics"].get(f"metrics/eval/{model}.json", {}).items()):
                key = headline(result) or ("perplexity" if result.get("perplexity") is not None else None)
                if key:
                    value = result[key]
                    if key in SHARES and result.get("rows"):
                        value = Score(value, result["rows"])
                    cells[f"{model} {dataset} {key}"] = value
        sources = row["metrics"].get("metrics/tokenize.json", {}).get("sft", {}).get("sources", {})
        for source, facts in sorted(sources.items()):
            cells[f"SFT share {source}"] = facts["share"]
        columns.update(dict.fromkeys(cells))
        values.append(cells)
    header = ["experiment", *params, *columns]
    body = [[row["name"], *(row["params"].get(p) for p in params), *(cells.get(c) for c in columns)]
            for row, cells in zip(rows, values, strict=True)]
    return header, body


def markdown(header: list[str], body: list[list]) -> str:
    def cell(value) -> str:
        if isinstance(value, Score):
            return f"{value:.4g} [{value.interval()[0]:.2f}, {value.interval()[1]:.2f}]"
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def plot(header: list[str], body: list[list], x: str | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = x in header and all(isinstance(row[header.index(x)], (int, float)) for row in body)
    order = sorted(range(len(body)), key=lambda i: body[i][header.index(x)]) if numeric else range(len(body))
    xs = [body[i][header.index(x)] if numeric else i for i in order]
    panels = [(m, [c for c in header if c.startswith(f"{m} ") and not c.endswith("perplexity")]) for m in MODELS]
    panels.append(("SFT token share", [c for c in header if c.startswith("SFT share ")]))
    panels = [(title, cols) for title, cols in panels if cols]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, cols) in zip(axes[0], panels, strict=True):
        for column in cols:
            ys = [body[i][header.index(column)] for i in order]
            label = column.removeprefix("SFT share ") if title == "SFT token share" else column.split(" ")[1]
            line = ax.plot(xs, ys, marker="o", label=label)[0]
            if ys and all(isinstance(y, Score) for y in ys):  # the 95% intervals of held-out shares, shaded
                low, high = zip(*(y.interval() for y in ys), strict=True)
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.12, linewidth=0)
        ax.set_title(title if title == "SFT token share" else f"{title}: held-out score")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(x if numeric else "experiment")
        if not numeric:
            ax.set_xticks(xs, [body[i][0] for i in order], rotation=30, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="experiment names or revisions (default: all finished ones)")
    parser.add_argument("--x", help="the parameter on the x axis (default: the one numeric parameter that varies)")
    parser.add_argument("--out", default="reports", help="folder for compare.md and compare.png")
    args = parser.parse_args(argv)
    rows = experiments(exp_show(), args.names)
    if len(rows) < 2:
        raise LancyError("fewer than two finished experiments to compare; run a sweep first, e.g. "
                         "dvc exp run --queue -S 'mixture.imdb=0.2,0.8' && dvc queue start")
    header, body = table(rows)
    params = varying(rows)
    x = args.x or next((p for p in params
                        if all(isinstance(r["params"].get(p), (int, float)) for r in rows)), None)
    if args.x and args.x not in params:
        raise LancyError(f"--x {args.x} does not differ between the experiments; these do: {', '.join(params)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(header, body, x, out / "compare.png")
    (out / "compare.md").write_text(
        f"# Experiments compared\n\n`python -m lancy.compare{''.join(' ' + a for a in (argv or sys.argv[1:]))}` "
        f"from `dvc exp show --json`: {len(rows)} experiments; held-out scores per model and dataset, "
        f"perplexity per corpus, and each source's share of SFT tokens. A score that is a share of right rows "
        f"(accuracy, exact match, pass@1) comes with its 95% interval for the rows evaluated (Wilson; shaded "
        f"in the picture): two experiments whose intervals overlap widely are not told apart by these rows.\n\n"
        f"![held-out scores against {x or 'experiment'}](compare.png)\n\n" + markdown(header, body))
    print(f"wrote {out / 'compare.md'} and {out / 'compare.png'} ({len(rows)} experiments)")


if __name__ == "__main__":
    run_stage(main)
