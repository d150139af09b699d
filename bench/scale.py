"""Data stages at scale: download + mix + tokenize on 10M and 100M characters of real text (1B with --billion).

The corpus is the real WikiText-2 lines of ../shared/data/real in numbered copies (a local dataset, so nothing is
downloaded), with the real SST-2 sample as the SFT task; each stage runs as `dvc repro` would run it (a process of
its own, in a work folder with its params.yaml). Per stage: wall time, and the peak memory of its process tree
sampled every 50 ms (proportional set sizes, so a forked worker's pages shared with its parent count once): all
resident pages (PSS, which counts the pages of memory-mapped Arrow files the stage has touched: page cache the
kernel takes back when it needs it) and anonymous ones (what the stage itself allocated). Targets on the
anonymous peak, which is what a bigger corpus could exhaust.

Then, on the largest size below a billion: the tokenize stage with 1 and 2 processes, and its tokenize + pack
maps (in-process, with 1 and 2 processes) against the raw fast tokenizer's `encode_batch` on the same texts. The
stage also trains the tokenizer (on a bounded sample, `tokenize.tokenizer_sample_chars`) and imports
transformers and TRL: fixed costs that processes do not divide.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
SIZES = (10_000_000, 100_000_000)
BILLION = 1_000_000_000
QUICK_SIZES = (1_000_000, 3_000_000)
STAGES = (("download", ["stages.download", "wikitext"]), ("download", ["stages.download", "sst2"]),
          ("mix", ["stages.mix"]), ("tokenize", ["stages.tokenize"]))


def write_corpus(folder: Path, chars: int) -> int:
    """WikiText-2 validation lines, numbered copies, until `chars` characters: folder/train.parquet (and the real
    test split as test.parquet). Returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = [json.loads(line)["text"] for line in open(REAL / "wikitext2_raw" / "validation.jsonl")]
    folder.mkdir(parents=True, exist_ok=True)
    rows, written, copy = 0, 0, 0
    with pq.ParquetWriter(folder / "train.parquet", pa.schema([("text", pa.string())])) as writer:
        while written < chars:
            batch = [f"{line.rstrip()} ({copy})\n" if line.strip() else line for line in lines]
            writer.write_table(pa.table({"text": batch}))
            rows, written, copy = rows + len(batch), written + sum(map(len, batch)), copy + 1
    shutil.copy(REAL / "wikitext2_raw" / "test.jsonl", folder / "test.jsonl")
    return rows


def params(work: Path, chars: int, rows: int, num_proc: int) -> None:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    base.update(num_proc=num_proc, mixture={"sst2": 1.0, "wikitext": 0.0}, rl_mixture={}, corpus={"wikitext": 1.0})
    base["data"].update(source="local", train_rows=rows, test_rows=200,
                        local={"wikitext": str(work / "wikitext"), "sst2": str(REAL / "glue" / "sst2")})
    base["mix"].update(sft_rows=2000, rl_rows=64, corpus_chars=int(chars / 1.1))  # room for validation, held-out
    base["model"].update(vocab_size=8192)
    (work / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))


def tree_memory(pid: int) -> tuple[int, int]:
    """(PSS, anonymous PSS) in bytes of a process and its descendants, from /proc/<pid>/smaps_rollup.

    Proportional sizes, so pages a forked map worker shares with its parent count once; anonymous excludes the
    pages of memory-mapped files (page cache the kernel can drop)."""
    import psutil

    try:
        procs = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0, 0
    pss = anon = 0
    for proc in procs:
        try:
            lines = Path(f"/proc/{proc}/smaps_rollup").read_text().splitlines()[1:]
            fields = dict(line.split(":", 1) for line in lines)
        except (OSError, ValueError):
            continue  # gone, or a zombie
        pss += int(fields.get("Pss", "0 kB").split()[0]) * 1024
        anon += int(fields.get("Pss_Anon", "0 kB").split()[0]) * 1024
    return pss, anon


def run_stage(work: Path, module: list[str]) -> dict:
    """Wall time and peak memory of one stage process."""
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", TMPDIR=str(work / "tmp"))
    (work / "tmp").mkdir(exist_ok=True)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", *module], cwd=work, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    peak = {"rss": 0, "anon": 0}

    def sample():
        while process.poll() is None:
            rss, anon = tree_memory(process.pid)  # PSS
            peak["rss"], peak["anon"] = max(peak["rss"], rss), max(peak["anon"], anon)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0]
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(module)} failed:\n{output[-3000:]}")
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": peak["rss"] / 2**20,
            "peak_anon_mb": peak["anon"] / 2**20}


def pipeline(work: Path, chars: int, num_proc: int = 0) -> dict:
    rows = write_corpus(work / "wikitext", chars)
    params(work, chars, rows, num_proc)
    stages = {}
    for name, module in STAGES:
        result = run_stage(work, module)
        if name in stages:  # the two downloads: their sum, the larger peak
            result = {"wall_s": stages[name]["wall_s"] + result["wall_s"],
                      **{k: max(stages[name][k], result[k]) for k in ("peak_rss_mb", "peak_anon_mb")}}
        stages[name] = result
    counts = json.loads((work / "metrics" / "tokenize.json").read_text())
    tokens = counts["pretrain"]["tokens"] + counts["pretrain"]["dropped_tokens"] + counts["sft"]["tokens"]
    stages["tokenize"].update(tokens=tokens, tokens_per_core_s=tokens / stages["tokenize"]["wall_s"] / os.cpu_count())
    return {"chars": chars, "rows": rows, "stages": stages}


def tokenize_maps(corpus, sft, tokenizer, num_proc: int) -> tuple[int, float]:
    """(tokens, seconds) of what the tokenize stage runs on the corpus and the SFT rows: encoding, blocks, packing."""
    from lancy.packing import encode_docs, encode_sft, pack_blocks, pack_sft
    from lancy.tables import list_lengths, processes

    # A fresh fingerprint per run: datasets gives a map the shard count of any earlier cache files of the same
    # fingerprint (load_from_cache_file=False or not), so a 2-process map after a 1-process one would run as one.
    fresh = {"load_from_cache_file": False, "new_fingerprint": f"{time.time_ns()}"}
    start = time.perf_counter()
    docs = corpus.map(encode_docs, batched=True, remove_columns=corpus.column_names, **fresh,
                      num_proc=processes(num_proc, len(corpus)),
                      fn_kwargs={"tokenizer": tokenizer, "eos_id": tokenizer.eos_token_id})
    pack_blocks(docs, 256, num_proc)
    fresh["new_fingerprint"] += "-sft"
    examples = sft.map(encode_sft, batched=True, remove_columns=sft.column_names, **fresh,
                       num_proc=processes(num_proc, len(sft)),
                       fn_kwargs={"tokenizer": tokenizer, "max_length": 256})
    pack_sft(examples, 256, num_proc)
    seconds = time.perf_counter() - start
    return int(list_lengths(docs, "input_ids").sum() + list_lengths(examples, "input_ids").sum()), seconds


def encode_vs_raw(work: Path) -> dict:
    """Tokens/s of lancy's tokenize + pack maps (in this process) with 1 and 2 worker processes, and of the raw fast
    tokenizer's `encode_batch` (both cores through its own threads) on the same corpus and SFT texts."""
    sys.path.insert(0, str(REPO))
    from lancy.tables import read_table
    from lancy.tokenization import load_tokenizer

    tokenizer = load_tokenizer(str(work / "data/tokenized/tokenizer"))
    corpus, sft = read_table(work / "data/mixed/corpus"), read_table(work / "data/mixed/sft")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # as the stage: the parallelism is the processes
    ours = {n: tokenize_maps(corpus, sft, tokenizer, n) for n in (1, 2)}
    texts = corpus["text"][:] + sft["prompt"][:] + sft["completion"][:]
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    start = time.perf_counter()
    raw = sum(len(e.ids) for e in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False))
    raw_s = time.perf_counter() - start
    speed = {n: tokens / seconds for n, (tokens, seconds) in ours.items()}
    return {"raw_tokens_per_s": raw / raw_s, "lancy_tokens_per_s": speed[2], "lancy_one_process_tokens_per_s": speed[1],
            "ratio": speed[2] / (raw / raw_s), "process_speedup": speed[2] / speed[1], "raw_tokens": raw,
            "lancy_tokens": ours[2][0]}


def run(quick: bool = False, billion: bool = False, sizes: tuple[int, ...] = ()) -> dict:
    if not (REAL / "wikitext2_raw").exists():
        return {"skipped": f"{REAL} is absent"}
    sizes = sizes or (QUICK_SIZES if quick else SIZES + ((BILLION,) if billion else ()))
    results = {"sizes": []}
    with tempfile.TemporaryDirectory(prefix="lancy-scale-") as tmp:
        for chars in sizes:
            work = Path(tmp) / str(chars)
            results["sizes"].append(pipeline(work, chars))
            print(f"scale {chars / 1e6:.0f}M chars: " + ", ".join(
                f"{name} {s['wall_s']:.1f} s / {s['peak_anon_mb']:.0f} MB anon / {s['peak_rss_mb']:.0f} MB rss"
                for name, s in results["sizes"][-1]["stages"].items()), flush=True)
        largest = Path(tmp) / str(max(s for s in sizes if s < BILLION))
        _set_num_proc(largest, 1)
        one = run_stage(largest, ["stages.tokenize"])
        _set_num_proc(largest, 2)
        two = run_stage(largest, ["stages.tokenize"])
        results["processes"] = {"one_s": one["wall_s"], "two_s": two["wall_s"],
                                "speedup": one["wall_s"] / two["wall_s"]}
        results["encode"] = encode_vs_raw(largest)
    return results


def _set_num_proc(work: Path, num_proc: int, engine: str = "datasets") -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["num_proc"] = num_proc
    params["data"]["engine"] = engine
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def engines(chars: int) -> dict:
    """mix + tokenize on `chars` characters with the datasets engine (2 processes) and on a local Ray cluster of 1
    and 2 CPUs (`data.engine: ray`, docs/ray.md); checks that every run writes the same bytes."""
    results, outputs = {}, {}
    with tempfile.TemporaryDirectory(prefix="lancy-ray-") as tmp:
        work = Path(tmp)
        params(work, chars, write_corpus(work / "wikitext", chars), 2)
        for _, module in STAGES[:2]:
            run_stage(work, module)
        for engine, num_proc in (("datasets", 2), ("ray", 1), ("ray", 2)):
            _set_num_proc(work, num_proc, engine)
            run = {stage: run_stage(work, [f"stages.{stage}"]) for stage in ("mix", "tokenize")}
            results[f"{engine}_{num_proc}"] = run
            files = sorted(p for p in (work / "data").rglob("*") if p.is_file() and "raw" not in p.parts)
            outputs[engine, num_proc] = {str(p.relative_to(work)): p.read_bytes() for p in files}
            print(f"{engine}, num_proc {num_proc}: " + ", ".join(
                f"{stage} {r['wall_s']:.1f} s / {r['peak_anon_mb']:.0f} MB anon / {r['peak_rss_mb']:.0f} MB pss"
                for stage, r in run.items()), flush=True)
    results["identical"] = all(out == outputs["datasets", 2] for out in outputs.values())
    return results


def table(results: dict) -> list[tuple[str, str, str, bool]]:
    """(benchmark, measured, target, met) rows."""
    if "skipped" in results:
        return []
    by_size = {s["chars"]: s["stages"] for s in results["sizes"]}
    small, large = min(by_size), max(c for c in by_size if c < BILLION)
    rows = []
    for stage in ("download", "mix", "tokenize"):
        a, b = by_size[small][stage], by_size[large][stage]
        ratio = b["peak_anon_mb"] / a["peak_anon_mb"]
        rows.append((f"{stage}: peak memory {large / 1e6:.0f}M / {small / 1e6:.0f}M chars",
                     f"{ratio:.2f}x ({a['peak_anon_mb']:.0f} -> {b['peak_anon_mb']:.0f} MB anon; "
                     f"rss {a['peak_rss_mb']:.0f} -> {b['peak_rss_mb']:.0f} MB)", "<= 1.5x", ratio <= 1.5))
        if BILLION in by_size:
            c = by_size[BILLION][stage]
            above = (c["peak_anon_mb"] - a["peak_anon_mb"]) / 1024
            rows.append((f"{stage}: peak memory 1B - {small / 1e6:.0f}M chars", f"{above:+.2f} GiB "
                         f"({c['peak_anon_mb']:.0f} MB anon, rss {c['peak_rss_mb']:.0f} MB)", "<= 2 GiB", above <= 2))
        growth = b["wall_s"] / a["wall_s"]
        rows.append((f"{stage}: time {large / 1e6:.0f}M / {small / 1e6:.0f}M chars",
                     f"{growth:.1f}x ({a['wall_s']:.1f} -> {b['wall_s']:.1f} s)", "<= 12x", growth <= 12))
    encode, stage = results["encode"], results["processes"]
    rows.append(("tokenize + pack, 2 processes / 1", f"{encode['process_speedup']:.2f}x (whole stage "
                 f"{stage['one_s']:.1f} -> {stage['two_s']:.1f} s: {stage['speedup']:.2f}x)", ">= 1.7x",
                 encode["process_speedup"] >= 1.7))
    rows.append(("tokenize + pack / raw encode_batch", f"{encode['ratio']:.2f}x "
                 f"({encode['lancy_tokens_per_s'] / 1e6:.2f}M vs {encode['raw_tokens_per_s'] / 1e6:.2f}M tokens/s)",
                 ">= 0.8x", encode["ratio"] >= 0.8))
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--billion", action="store_true", help="also 1B characters (about 15 minutes more, 2 cores)")
    parser.add_argument("--sizes", default="", help="comma-separated sizes in characters, e.g. 10000000,1000000000")
    parser.add_argument("--out", default=str(REPO / "bench/out/scale.json"))
    parser.add_argument("--ray", type=int, default=0, help="instead: mix + tokenize on this many characters with "
                        "data.engine datasets and ray (1 and 2 CPUs); needs ray (requirements-ray.txt)")
    args = parser.parse_args()
    if args.ray:
        result = engines(args.ray)
        print(f"byte-identical outputs: {result['identical']}")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).with_name("scale_ray.json").write_text(json.dumps(result, indent=2) + "\n")
        sys.exit(0 if result["identical"] else 1)
    out = run(args.quick, args.billion, tuple(int(size) for size in args.sizes.split(",") if size))
    for row in table(out):
        print(f"{row[0]:<45} {row[1]:<60} target {row[2]:<8} {'met' if row[3] else 'MISSED'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
