"""GPU benchmark: SFT steps of a Qwen2.5-0.5B-shaped model (random weights from its config, no download).

    python bench/gpu_sft.py [--real-tokens 16384] [--steps 10] [--out gpu_sft.json]
    python bench/gpu_sft.py --smoke     # a tiny model on the CPU: checks the script, measures nothing

Needs only torch and transformers (flash-attn and liger-kernel are used when installed), so it runs on a
bare GPU machine. Compares packed (padding-free, position_ids restarting per example) against padded
batches at equal real tokens per step, sdpa against flash_attention_2, and Liger kernels on and off; bf16
autocast over fp32 weights, AdamW. Reports real tokens/s, MFU and peak memory.

MFU = (6 N + attention) FLOPs per real token x real tokens/s / the GPU's dense bf16 peak, where N excludes
the embedding matrix and attention counts 6 x layers x hidden x length^2 per sequence (causal, forward
and backward) over each example's own length.
"""
import argparse
import importlib.util
import json
import random
import time

import torch

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense, per GPU


def lengths(n: int, seed: int) -> list[int]:
    """Prompt+completion lengths like the IMDB + SST-2 mixture under a Qwen tokenizer (70% reviews)."""
    rng = random.Random(seed)
    return [min(1024, int(rng.lognormvariate(5.6, 0.55))) if rng.random() < 0.7 else max(8, int(rng.gauss(40, 14)))
            for _ in range(n)]


def model_config(smoke: bool):
    from transformers import Qwen2Config

    if smoke:
        return Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    return Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1_000_000.0, tie_word_embeddings=True)


def batches(lens: list[int], real_tokens: int, packed: bool, row_length: int, vocab: int, device: str):
    """One step's inputs: packed rows (best fit decreasing, no mask) or a right-padded batch with a mask."""
    step, total = [], 0
    for n in lens:
        if total + n > real_tokens:
            break
        step.append(n)
        total += n
    if packed:
        rows = []
        for n in sorted(step, reverse=True):
            fit = min((r for r in rows if sum(r) + n <= row_length), key=lambda r: row_length - sum(r), default=None)
            (fit.append(n) if fit is not None else rows.append([n]))
        width = max(sum(r) for r in rows)
        ids = torch.randint(0, vocab, (len(rows), width))
        positions = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            segments = [torch.arange(n) for n in row] + [torch.arange(width - sum(row))]
            positions[i] = torch.cat(segments)
        inputs = {"input_ids": ids, "labels": ids.clone(), "position_ids": positions}
    else:
        width = max(step)
        ids = torch.randint(0, vocab, (len(step), width))
        mask = torch.tensor([[1] * n + [0] * (width - n) for n in step])
        inputs = {"input_ids": ids, "labels": ids.masked_fill(mask == 0, -100), "attention_mask": mask}
    return {k: v.to(device) for k, v in inputs.items()}, step


def run_case(config, attention: str, liger: bool, packed: bool, args, device: str) -> dict:
    from transformers import AutoModelForCausalLM

    if liger:
        from liger_kernel.transformers import apply_liger_kernel_to_qwen2

        apply_liger_kernel_to_qwen2()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attention).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device == "cuda")
    n_params = sum(p.numel() for p in model.parameters()) - config.vocab_size * config.hidden_size
    lens = lengths(200_000, seed=0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    real = flops = 0
    elapsed = 0.0
    try:
        for step in range(args.warmup + args.steps):
            inputs, step_lens = batches(lens[step * 400:], args.real_tokens, packed, args.row_length,
                                        config.vocab_size, device)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                elapsed += time.perf_counter() - start
                real += sum(step_lens)
                flops += sum(6 * n_params * n + 6 * config.num_hidden_layers * config.hidden_size * n * n
                             for n in step_lens)
    except torch.OutOfMemoryError:
        return {"error": "out of memory"}
    peak = max((v for k, v in PEAK_BF16.items() if k in (torch.cuda.get_device_name(0) if device == "cuda" else "")),
               default=None)
    return {
        "real_tokens_per_s": real / elapsed,
        "mfu": flops / elapsed / peak if peak else None,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-tokens", type=int, default=16384, help="real (non-pad) tokens per optimizer step")
    parser.add_argument("--row-length", type=int, default=4096, help="packed row length")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default="gpu_sft.json")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if device == "cpu" and not args.smoke:
        raise SystemExit("no CUDA device: this benchmark needs a GPU (use --smoke to check the script on a CPU)")
    if args.smoke:
        args.real_tokens, args.row_length, args.steps, args.warmup = 1024, 512, 2, 1
    config = model_config(args.smoke)
    attentions = ["sdpa"] + (["flash_attention_2"] if importable("flash_attn") and device == "cuda" else [])
    ligers = [False] + ([True] if importable("liger_kernel") and device == "cuda" else [])
    results = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke)", "cases": []}
    for liger in ligers:  # Liger patches transformers for good: all cases without it come first
        for attention in attentions:
            for packed in (True, False):
                case = {"attention": attention, "liger": liger, "packed": packed}
                case.update(run_case(config, attention, liger, packed, args, device))
                results["cases"].append(case)
                print(json.dumps(case), flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)


def importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    main()
