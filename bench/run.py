"""make bench: lancy's CPU benchmarks, each against its target, as a table and as JSON.

    python -m bench.run [--quick] [--billion] [--out bench/out/bench.json]

Every comparison is a ratio of two runs made side by side in the same process or session, so it holds up
on a noisy machine; absolute times are only comparable on the same machine. The GPU benchmark is
bench/gpu_sft.py (it needs CUDA).
"""
import argparse
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def table(results: dict) -> list[tuple[str, str, str, bool]]:
    """(benchmark, measured, target, met) rows."""
    tok, pack, train = results["tokenize"], results["packing"], results["training"]
    noop, stages = results["pipeline"]["noop"], results["pipeline"]["stages_s"]
    full = results["head_by_share"]["1.0"]
    return [
        ("tokenize+pack tokens/s per core", f"{tok['lancy']['tokens_per_core_s'] / 1e6:.2f}M "
         f"(per-example map {tok['per_example_map']['tokens_per_core_s'] / 1e6:.2f}M; "
         f"wall {tok['wall_speedup']:.1f}x faster)",
         ">= 0.5M", tok["lancy"]["tokens_per_core_s"] >= 0.5e6),
        ("SFT packing efficiency (max_length 512)", f"{pack['sft_packed_efficiency']:.3f} "
         f"(padded batches of 8: {pack['sft_padded_efficiency']:.3f})", ">= 0.95",
         pack["sft_packed_efficiency"] >= 0.95),
        ("pretraining block efficiency", f"{pack['pretrain_block_efficiency']:.4f}", ">= 0.99",
         pack["pretrain_block_efficiency"] >= 0.99),
        ("packed / padded SFT real tokens/s (CPU)", f"{train['speedup']:.2f}x "
         f"({train['packed']['real_tokens_per_s']:.0f} vs {train['padded']['real_tokens_per_s']:.0f})", ">= 2.0x",
         train["speedup"] >= 2.0),
        ("held-out loss gap, same real tokens", f"{train['loss_gap'] * 100:.2f}% "
         f"({train['packed']['held_out_loss']:.3f} vs {train['padded']['held_out_loss']:.3f})", "<= 2%",
         train["loss_gap"] <= 0.02),
        ("fused / model's own LM head, packed SFT tokens/s", f"{train['fused_speedup']:.2f}x (held-out loss "
         f"{train['packed_fused']['held_out_loss']:.4f} vs {train['packed']['held_out_loss']:.4f})", ">= 1.2x",
         train["fused_speedup"] >= 1.2 and train["fused_loss_gap"] <= 0.001),
        ("fused / model's own LM head, step speed by labelled share", ", ".join(
            f"{share}: {r['speedup']:.2f}x" for share, r in results["head_by_share"].items()), ">= 1.2x at 0.1",
         results["head_by_share"]["0.1"]["speedup"] >= 1.2),
        ("chunked / model's own loss, pretraining step (every position labelled)",
         f"{full['chunked_speedup']:.2f}x (first loss {full['chunked_first_loss']:.6f} vs "
         f"{full['own_first_loss']:.6f})", ">= 1.1x",
         full["chunked_speedup"] >= 1.1 and full["chunked_loss_gap"] <= 1e-6),
        ("dvc repro, nothing to do / bare DVC", f"{noop['ratio']:.2f}x ({noop['lancy_s']:.2f} s vs "
         f"{noop['bare_dvc_s']:.2f} s)", "<= 1.5x", noop["ratio"] <= 1.5),
        ("embedded pipeline end to end", f"{stages['total']:.0f} s", "<= 300 s", stages["total"] <= 300),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized smoke run (targets are not meaningful)")
    parser.add_argument("--billion", action="store_true", help="the data-stage scale section at 1B characters too")
    parser.add_argument("--out", default="bench/out/bench.json")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import pipeline, scale, throughput

    results = {"machine": machine(), "quick": args.quick, **throughput.run(args.quick),
               "pipeline": pipeline.run(args.quick), "scale": scale.run(args.quick, args.billion)}
    rows = table(results) + scale.table(results["scale"])
    results["targets"] = [{"benchmark": b, "measured": m, "target": t, "met": ok} for b, m, t, ok in rows]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(b) for b, *_ in rows)
    print(f"\n{results['machine']['cpu']} ({results['machine']['cores']} cores); data: {results['data']}")
    for benchmark, measured, target, met in rows:
        print(f"{benchmark:<{width}}  {measured:<50}  target {target:<8}  {'met' if met else 'MISSED'}")
    print("\nper stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results["pipeline"]["stages_s"].items()))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
