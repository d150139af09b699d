"""The whole pipeline through the real dvc commands, on a copy of the repository with reduced sizes.

dvc repro -> a second dvc repro is a no-op -> code edits make exactly the stages they touch out of date -> a new
dataset would download that dataset alone -> a two-value mixture sweep through DVC's queue (pretraining is
reused) -> per-row results read back from the DVC cache, lancy.compare's paired comparisons, dvc plots diff
and dvc metrics diff across the sweep -> the run cache: the workspace goes to a swept value and back to the
committed one without running a stage -> dvc push and dvc exp push to an S3 API on loopback (moto) and to a
local remote -> a fresh clone pulls, and its dvc repro runs nothing; dvc exp pull brings an experiment with its
outputs.
"""
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lancy.compare import experiments

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "data": {"train_rows": 300, "test_rows": 40},
    "mix": {"sft_rows": 300, "rl_rows": 16, "corpus_chars": 150_000},
    "model": {"vocab_size": 1024, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
    "tokenize": {"max_length": 128},
    "pretrain": {"max_steps": 4, "batch_size": 4, "logging_steps": 2},
    "sft": {"max_steps": 4, "batch_size": 4, "logging_steps": 2},
    "grpo": {"max_steps": 2, "batch_size": 4, "num_generations": 2, "logging_steps": 1},
    "evaluate": {"max_rows": 8, "max_new_tokens": 8},
}

pytestmark = pytest.mark.e2e


def _env(cwd: Path) -> dict:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", HF_HUB_OFFLINE="1",
                HF_DATASETS_OFFLINE="1", PYTHONPATH=str(cwd))


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _deep_update(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict):
            _deep_update(target.setdefault(key, {}), value)
        else:
            target[key] = value


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A committed copy of the working tree (tracked and untracked, not ignored files) with small params."""
    root = tmp_path_factory.mktemp("lancy")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(("metrics/", "dvc.lock")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    _deep_update(params, SMALL)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(args, cwd=root, check=True)
    return root


def _flat(data: dict, prefix: str = "") -> list[str]:
    """The dotted keys of a metrics file: the columns `dvc exp show` makes of it."""
    return [key for name, value in data.items()
            for key in (_flat(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"])]


def _stages(output: str) -> tuple[set[str], set[str]]:
    """(stages run, stages restored from the run cache) in a dvc log."""
    return _ran(output), set(re.findall(r"Stage '([^']+)' is cached - skipping run", output))


def _commit(project: Path, message: str) -> None:
    _run(["git", "add", "-A"], project)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], project)


def _finished(project: Path) -> int:
    """Experiments that finished: refs under refs/exps/<baseline>/ (one git call, milliseconds)."""
    refs = _run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], project).split()
    return sum(bool(re.match(r"refs/exps/[0-9a-f]{2}/", ref)) for ref in refs)


def _queue_done(project: Path, finished: int, timeout: float = 900) -> str:
    """Waits until `finished` experiments have finished, or the queue stopped (a failure), and returns `dvc queue
    status`. The status takes 4 s of CPU that the queue's workers need on 2 cores, so while experiments run it is
    asked every 30 s only; the cheap check for finished experiments runs every 2 s."""
    deadline = time.monotonic() + timeout
    status, asked = "", time.monotonic()
    while True:
        if _finished(project) >= finished or time.monotonic() - asked > 30:
            status, asked = _run(["dvc", "queue", "status"], project), time.monotonic()
            if not re.search(r"\b(Queued|Running)\b", status):
                return status
        assert time.monotonic() < deadline, f"the queue did not finish:\n{status}"
        time.sleep(2)


def test_pipeline_experiments_and_sharing(project: Path, tmp_path: Path):
    output = _run(["dvc", "repro"], project)
    stages = {"mix", "tokenize", "pretrain", "sft", "grpo", "evaluate@pretrain", "evaluate@sft", "evaluate@grpo"}
    assert stages | {"download@imdb", "download@sst2", "download@gsm8k", "download@wikitext"} <= _ran(output)
    for name in ("pretrain", "sft", "grpo"):
        assert (project / "models" / name / "config.json").exists()
        assert (project / "metrics" / name / "plots" / "metrics" / "loss.tsv").exists()
    evaluation = json.loads((project / "metrics/eval/sft.json").read_text())
    assert {"imdb", "sst2", "gsm8k", "wikitext"} <= set(evaluation)
    assert 0 <= evaluation["imdb"]["accuracy"] <= 1 and evaluation["wikitext"]["perplexity"] > 1

    assert _ran(_run(["dvc", "repro"], project)) == set()

    # A code change re-runs what it touches: a label word edited in the catalog makes mix (and all that follows
    # it) out of date, and not pretrain (tests/test_dvc_yaml.py checks every stage's code deps statically).
    catalog = project / "lancy" / "catalog.py"
    original = catalog.read_text()
    catalog.write_text(original.replace('labels=("negative", "positive")', 'labels=("negative", "favourable")', 1))
    changed = set(json.loads(_run(["dvc", "status", "--json"], project)))
    assert {"mix", "evaluate@sft", "evaluate@grpo"} <= changed and "pretrain" not in changed
    catalog.write_text(original)

    # A new dataset would download that dataset alone (dvc's own plan, without running it).
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("\nmixture:\n", "\nmixture:\n  mrpc: 0.2\n", 1))
    planned = _ran(_run(["dvc", "repro", "--dry"], project))
    assert {s for s in planned if s.startswith("download@")} == {"download@mrpc"} and "mix" in planned
    (project / "params.yaml").write_text(params)
    assert _ran(_run(["dvc", "repro"], project)) == set()
    _commit(project, "baseline")
    base = yaml.safe_load(params)["mixture"]["imdb"]
    # The same run writes the same bytes (no wall-clock time in any output): training stages executed again, not
    # restored, leave dvc.lock as committed.
    for stage in ("pretrain", "grpo"):
        assert stage in _ran(_run(["dvc", "repro", "-f", "-s", stage], project))
    assert _run(["git", "status", "--porcelain", "--untracked-files=no"], project).strip() == ""

    # A sweep through DVC's queue. Each experiment re-runs the mixture and what follows it; the corpus weights
    # did not change, so the pretraining blocks come out identical and pretraining is reused, never re-run.
    before = _finished(project)
    _run(["dvc", "exp", "run", "--queue", "-S", "mixture.imdb=0.2,0.7"], project)
    assert _run(["dvc", "queue", "status"], project).count("Queued") == 2
    # Two workers, one per core. The detached workers inherit the command's stdout, so it goes to a file: a pipe
    # would stay open until the second (idle) worker exits.
    with open(tmp_path / "queue-start.log", "w") as log:
        subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=project, env=_env(project), stdout=log,
                       stderr=subprocess.STDOUT, check=True, timeout=120)
    status = _queue_done(project, before + 2)
    _run(["dvc", "queue", "stop"], project)  # the idle workers
    assert status.count("Success") == 2, status
    show = json.loads(_run(["dvc", "exp", "show", "--json"], project))
    sweep = {state["name"]: state["data"] for group in show[1]["experiments"] for state in group["revs"]}
    imdb = {name: data["params"]["params.yaml"]["data"]["mixture"]["imdb"] for name, data in sweep.items()}
    assert sorted(imdb.values()) == [0.2, 0.7]
    for name, data in sweep.items():
        assert "imdb" in data["metrics"]["metrics/eval/grpo.json"]["data"]  # read from the DVC cache
        log = _run(["dvc", "queue", "logs", name], project)
        assert {"mix", "tokenize", "sft", "grpo"} <= _ran(log) and "pretrain" not in _ran(log)
        assert not any(stage.startswith("download@") for stage in _ran(log))
    low, high = sorted(sweep, key=imdb.get)
    shares = {n: sweep[n]["metrics"]["metrics/sft_shares.json"]["data"]["imdb"] for n in sweep}
    for data in sweep.values():  # the experiment table: scores, losses and shares, no run facts
        columns = [f"{path}:{key}" for path, file in data["metrics"].items() for key in _flat(file["data"])]
        assert len(columns) <= 30 and "metrics/tokenize.json" not in data["metrics"], columns
    assert shares[low] < shares[high]

    # The comparison: per-row results of both experiments read back from the DVC cache and compared row by row
    # (the same seed, so the same held-out rows); lancy's tables and pictures, DVC's grouped bars and metrics diff.
    rows = _run([sys.executable, "-m", "lancy.show", "data/results/sft", "--rev", low, "-n", "3"], project)
    assert int(re.search(r"sft: (\d+) rows", rows).group(1)) > 3 * SMALL["data"]["test_rows"]  # imdb sst2 gsm8k +
    assert json.loads(rows.splitlines()[-1])["id"]
    _run([sys.executable, "-m", "lancy.compare", low, high, "--out", str(tmp_path / "pair")], project)
    pair = (tmp_path / "pair/compare.md").read_text()
    assert "### mixture.imdb=0.2 (A) against mixture.imdb=0.7 (B)" in pair
    loss = next(line for line in pair.splitlines() if line.startswith("| sft | imdb | answer_loss"))
    assert loss.endswith(f"| {SMALL['data']['test_rows']} | 1 |")  # every held-out row, paired, one seed
    assert re.search(r"\| (no detectable difference|mixture\.imdb=0\.[27] better) \|", loss)
    _run([sys.executable, "-m", "lancy.compare", "--out", str(tmp_path / "compare")], project)
    report = (tmp_path / "compare/compare.md").read_text()
    assert "mixture.imdb" in report and low in report and high in report and "sft imdb accuracy" in report
    assert " ± " in report.split("## Experiments")[1]  # standard errors from each run's details, at its revision
    assert report.count(" (A) against mixture.imdb=") == 2  # the baseline against each experiment
    for picture in ("compare.png", "compare-differences.png"):
        assert (tmp_path / "compare" / picture).read_bytes()[:4] == b"\x89PNG"
    plots = json.loads(_run(["dvc", "plots", "diff", low, high, "--json"], project))["data"]
    bars = plots["held_out_sft"][0]["content"]["data"]["values"]
    assert {row["rev"] for row in bars} == {low, high} and {row["dataset"] for row in bars} >= {"imdb", "sst2"}
    assert {row["rev"] for row in plots["sft_loss"][0]["content"]["data"]["values"]} == {low, high}
    diff = json.loads(_run(["dvc", "metrics", "diff", "HEAD", high, "--json"], project))
    assert diff["metrics/sft_shares.json"]["imdb"]["new"] > diff["metrics/sft_shares.json"]["imdb"]["old"]

    # The run cache: the queue's runs are in it, so the workspace reaches a swept value and comes back to the
    # committed one without running any stage.
    ran, cached = _stages(_run(["dvc", "exp", "run", "-S", "mixture.imdb=0.7"], project))
    assert ran == set() and {"mix", "tokenize", "sft", "grpo", "evaluate@sft"} <= cached
    assert json.loads((project / "metrics/tokenize.json").read_text())["sft"]["sources"]["imdb"]["share"] == \
        shares[high]
    ran, cached = _stages(_run(["dvc", "exp", "run", "-S", f"mixture.imdb={base}"], project))
    assert ran == set() and {"mix", "tokenize", "sft", "grpo", "evaluate@grpo"} <= cached
    assert _run(["git", "status", "--porcelain", "--untracked-files=no"], project).strip() == ""

    # Shared storage: an S3 API on loopback and a local folder.
    _share_and_pull(project, tmp_path, [low, high])


def _share_and_pull(project: Path, tmp_path: Path, experiments: list[str]) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the server's request log

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="lancy")
        origin = tmp_path / "origin.git"
        _run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
        _run(["git", "remote", "add", "origin", str(origin)], project)
        # --local keeps the remotes out of the commit the experiments hang from (a real project commits them,
        # docs/experiments.md: Shared storage); the credentials are always local.
        remotes = [["dvc", "remote", "add", "--local", "-d", "storage", "s3://lancy/cache"],
                   ["dvc", "remote", "modify", "--local", "storage", "endpointurl", endpoint],
                   ["dvc", "remote", "modify", "--local", "storage", "access_key_id", "testing"],
                   ["dvc", "remote", "modify", "--local", "storage", "secret_access_key", "testing"],
                   ["dvc", "remote", "add", "--local", "backup", str(tmp_path / "backup")]]
        for args in remotes:
            _run(args, project)
        _run(["git", "push", "-q", "origin", "HEAD:main"], project)
        _run(["dvc", "push", "--run-cache"], project)
        _run(["dvc", "push", "-r", "backup"], project)  # the local remote
        _run(["dvc", "exp", "push", "origin", *experiments], project)
        assert "in sync" in _run(["dvc", "status", "--cloud", "-r", "backup"], project)

        clone = tmp_path / "clone"  # a colleague's clone: pull from S3, then dvc repro runs nothing
        _run(["git", "clone", "-q", "-b", "main", str(origin), str(clone)], tmp_path)
        for args in remotes:
            _run(args, clone)
        _run(["dvc", "pull"], clone)
        assert json.loads((clone / "metrics/eval/sft.json").read_text()) == json.loads(
            (project / "metrics/eval/sft.json").read_text())
        assert _ran(_run(["dvc", "repro"], clone)) == set()
        _run(["dvc", "exp", "pull", "origin", experiments[0]], clone)
        show = json.loads(_run(["dvc", "exp", "show", "--json"], clone))
        pulled = {state["name"]: state["data"] for group in show[1]["experiments"] for state in group["revs"]}
        assert "imdb" in pulled[experiments[0]]["metrics"]["metrics/eval/sft.json"]["data"]
    finally:
        server.stop()


@pytest.mark.slow
def test_mixture_search_of_four_proxies(project: Path, tmp_path: Path):
    """python -m lancy.search sample -> dvc queue start -> propose, on reduced sizes (make test-slow)."""
    _run(["dvc", "repro"], project)  # the baseline (nothing to do after the test above)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["search"].update(proxies=4, seed=1, replicates=1, proxy={"sft.max_steps": 2, "evaluate.max_rows": 4,
                                                                    "evaluate.generate": False})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _commit(project, "search params")
    before = _finished(project)
    queued = _run([sys.executable, "-m", "lancy.search", "sample"], project)
    assert queued.count("dvc exp run --queue -n search-proxy-s1-") == 5  # 4 proxies, 1 replicate of the first
    with open(tmp_path / "queue-start.log", "w") as log:
        subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=project, env=_env(project), stdout=log,
                       stderr=subprocess.STDOUT, check=True, timeout=120)
    status = _queue_done(project, before + 5).splitlines()
    assert sum("search-proxy-s1-" in line and "Success" in line for line in status) == 5, status
    _run(["dvc", "queue", "stop"], project)
    for n in range(4):
        ran = _ran(_run(["dvc", "queue", "logs", f"search-proxy-s1-{n:02d}"], project))
        assert "evaluate@sft" in ran and not ran & {"pretrain", "grpo", "evaluate@grpo"}, ran
    _run([sys.executable, "-m", "lancy.search", "propose", "--out", str(tmp_path / "search")], project)
    report = (tmp_path / "search/mixture-search.md").read_text()
    assert "4 proxy runs" in report and "Spearman rank correlation" in report and "dvc exp run -S mixture." in report
    assert "Seed noise of one proxy" in report and "over 2 runs of one mixture that differ in `sft.seed`" in report
    assert "geometric mean held-out answer loss (lower is better) of sft" in report
    show = subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=_env(project), capture_output=True,
                          text=True, check=True).stdout
    proxy = next(r for r in experiments(json.loads(show)) if r["name"] == "search-proxy-s1-00")
    imdb = proxy["metrics"]["metrics/eval/sft.json"]["imdb"]
    assert imdb["answer_loss"] > 0 and "accuracy" not in imdb  # no generation in a proxy
    assert (tmp_path / "search/mixture-search.png").read_bytes()[:4] == b"\x89PNG"
