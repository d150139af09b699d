"""GPU benchmark: SFT steps of a Qwen2.5-0.5B-shaped model (random weights from its config, no download).

    python bench/gpu_sft.py [--real-tokens 16384] [--steps 10] [--out gpu_sft.json]
    python bench/gpu_sft.py --smoke     # a tiny model on the CPU: checks the script, measures nothing

Needs only torch and transformers (flash-attn and liger-kernel are used when installed), so it runs on a
bare GPU machine. Compares packed against padded batches at equal real tokens per step, sdpa against
flash_attention_2, and Liger kernels on and off; bf16 autocast over fp32 weights, AdamW. Reports real
tokens/s, MFU and peak memory.

Without the flash-attn package (it builds only against a CUDA toolkit, and has no wheels on PyPI), the flash
path is still checked and timed: `torch_flash` (lancy/attention.py, what `model.attention: auto` picks for SFT
on CUDA without flash-attn) is transformers' own flash-attention code path (`flash_attention_forward`: the
unpadding, the cu_seq_lens kwargs, `_is_packed_sequence`) registered the way transformers registers a hub
flash kernel, running PyTorch's built-in FlashAttention kernels (`torch.nn.attention.varlen.varlen_attn` for
variable lengths, sdpa's flash backend for dense rows).

Packed batches are what training sends: rows packed best-fit-decreasing, collated by lancy's own
`packed_collator` (use_cache=False): for sdpa, rows with position_ids restarting per example (transformers
turns them into a block-diagonal mask); for flash_attention_2, one padding-free flattened row with the
cu_seq_lens_q/k boundaries. Padded batches are right-padded with an attention mask. Before anything is
timed, each attention implementation must give packed examples the logits they get run one at a time
(within a bf16 tolerance); otherwise the script stops with exit status 1.

MFU = FLOPs per step x steps/s / the GPU's dense bf16 peak, counting what the kernels compute:
    6 N T  +  6 x layers x hidden x sum(s^2)
N is the parameter count without the embedding matrix, T the tokens in the batch (padding included);
the attention term is causal attention (forward and backward) over each sequence s the kernel is given:
each example's own length for packed runs, and for padded runs under flash attention (transformers unpads
the batch into the examples); the padded width for padded runs under sdpa. sdpa evaluates the whole
masked square of a row when it is given a mask (block-diagonal or padding), which this count leaves out.
"""
import argparse
import importlib.util
import json
import random
import time
from pathlib import Path

import torch
import transformers

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense, per GPU
PAD = 0
# Max |packed - alone| logit difference, relative to the largest logit. This model under CPU bf16 autocast:
# 0.009 with the examples kept apart, 1.4 when they attend to each other.
BF16_TOLERANCE = 0.05
FLOPS_FORMULA = ("6 N T + 6 x layers x hidden x sum(s^2); T: tokens in the batch incl. padding; s: each example's "
                 "own length (packed runs, and padded runs under flash attention, which unpads them), the padded "
                 "width (padded runs under sdpa)")


def load_lancy(name: str):
    """A lancy module loaded by path: the lancy package's __init__ imports datasets, which a bare GPU machine
    lacks, and the collators and attention under test must be the ones training uses."""
    path = Path(__file__).resolve().parents[1] / "lancy" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"lancy_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


packing, attention_module = load_lancy("packing"), load_lancy("attention")
TORCH_FLASH = attention_module.TORCH_FLASH


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


def build_model(config, attention: str, device: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attention).to(device)


def take(lens: list[int], real_tokens: int) -> list[int]:
    """The examples of one step: lengths from the front of lens while they fit real_tokens."""
    step, total = [], 0
    for n in lens:
        if total + n > real_tokens:
            break
        step.append(n)
        total += n
    return step


def pack_rows(examples: list[torch.Tensor], row_length: int) -> list[list[torch.Tensor]]:
    """Best-fit-decreasing bins of at most row_length tokens."""
    rows = []
    for ids in sorted(examples, key=len, reverse=True):
        fits = [r for r in rows if sum(map(len, r)) + len(ids) <= row_length]
        fit = min(fits, key=lambda r: row_length - sum(map(len, r)), default=None)
        (fit.append(ids) if fit is not None else rows.append([ids]))
    return rows


def packed_batch(model, rows: list[list[torch.Tensor]]) -> dict:
    """The packed rows as training collates them for this model's attention implementation."""
    features = [{"input_ids": torch.cat(row).tolist(), "position_ids": [p for ids in row for p in range(len(ids))]}
                for row in rows]
    return packing.packed_collator(model, PAD)(features)


def padded_batch(examples: list[torch.Tensor]) -> dict:
    width = max(map(len, examples))
    ids = torch.full((len(examples), width), PAD)
    mask = torch.zeros_like(ids)
    for i, example in enumerate(examples):
        ids[i, : len(example)], mask[i, : len(example)] = example, 1
    return {"input_ids": ids, "labels": ids.masked_fill(mask == 0, -100), "attention_mask": mask, "use_cache": False}


def to_device(batch: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def check_packing(config, attention: str, device: str, row_length: int) -> float:
    """The largest packed-vs-alone logit difference (relative to the largest logit); exits 1 beyond tolerance.

    Packed examples must get the logits they get alone: if they attend to the examples packed before them (a
    multi-row batch under flash attention, or a KV cache), every timing below would measure the wrong thing.
    """
    model = build_model(config, attention, device).eval()
    generator = torch.Generator().manual_seed(1)
    examples = [torch.randint(1, config.vocab_size, (n,), generator=generator) for n in lengths(16, seed=1)]
    rows = pack_rows(examples, row_length)
    assert any(len(row) > 1 for row in rows), "the check needs rows holding several examples"
    batch = packed_batch(model, rows)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    with torch.no_grad(), autocast:
        logits = model(**to_device(batch, device)).logits.float()
        # Real tokens in row order: one flattened row, or each row's tokens before its padding.
        packed = logits[0] if logits.shape[0] == 1 else torch.cat(
            [logits[r, : sum(map(len, row))] for r, row in enumerate(rows)])
        alone = torch.cat([model(input_ids=ids[None].to(device), use_cache=False).logits[0].float()
                           for row in rows for ids in row])
    error = ((packed - alone).abs().max() / alone.abs().max()).item()
    if "flash" in attention:  # the failure the check exists for: several packed rows in one flash batch
        with torch.no_grad(), autocast:
            leaky = model(**to_device(packing.PackedCollator(PAD)([
                {"input_ids": torch.cat(row).tolist(), "position_ids": [p for ids in row for p in range(len(ids))]}
                for row in rows]), device)).logits.float()
        leaked = torch.cat([leaky[r, : sum(map(len, row))] for r, row in enumerate(rows)])
        control = ((leaked - alone).abs().max() / alone.abs().max()).item()
        print(json.dumps({"attention": attention, "rows_batched_as_for_sdpa": control}), flush=True)
        if control <= BF16_TOLERANCE:
            raise SystemExit(f"packing check under {attention} cannot fail: rows batched as for sdpa (examples "
                             f"attending to each other) also match per-example logits ({control:.3f})")
    if error > BF16_TOLERANCE:
        raise SystemExit(f"packing check failed under {attention}: packed logits differ from per-example logits by "
                         f"{error:.3f} of the largest logit (bf16 tolerance {BF16_TOLERANCE}): packed examples attend "
                         f"to each other; fix lancy.packing's collators before timing anything")
    return error


def check_liger(config, device: str) -> float:
    """Liger's patched model against the model's own loss, with the same seeded weights on one packed batch,
    before any Liger case is timed (Liger patches transformers for good): the relative loss difference;
    exits 1 beyond the bf16 tolerance."""
    from liger_kernel.transformers import apply_liger_kernel_to_qwen2

    generator = torch.Generator().manual_seed(1)
    examples = [torch.randint(1, config.vocab_size, (n,), generator=generator) for n in take(lengths(2000, 1), 4096)]

    def loss() -> float:
        model = build_model(config, "sdpa", device)  # seeded: the same weights each time
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            return model(**to_device(packed_batch(model, pack_rows(examples, 1024)), device)).loss.float().item()

    own = loss()
    apply_liger_kernel_to_qwen2()
    error = abs(loss() - own) / abs(own)
    if error > BF16_TOLERANCE:
        raise SystemExit(f"Liger check failed: its loss differs from the model's own by {error:.3f} (relative; "
                         f"bf16 tolerance {BF16_TOLERANCE}); not timing Liger")
    return error


def step_flops(config, n_params: int, batch: dict, step: list[int], attention: str, packed: bool) -> float:
    """FLOPS_FORMULA for one step (see the module docstring)."""
    unpadded = packed or "flash" in attention
    sequences = step if unpadded else [batch["input_ids"].shape[1]] * len(step)
    attention_flops = 6 * config.num_hidden_layers * config.hidden_size * sum(s * s for s in sequences)
    return 6 * n_params * batch["input_ids"].numel() + attention_flops


def run_case(config, attention: str, liger: bool, packed: bool, args, device: str) -> dict:
    if liger:
        from liger_kernel.transformers import apply_liger_kernel_to_qwen2

        apply_liger_kernel_to_qwen2()
    model = build_model(config, attention, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device == "cuda")
    n_params = sum(p.numel() for p in model.parameters()) - config.vocab_size * config.hidden_size
    lens = lengths(200_000, seed=0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    real = flops = 0
    elapsed = 0.0
    try:
        for step in range(args.warmup + args.steps):
            step_lens = take(lens[step * 400:], args.real_tokens)
            examples = [torch.randint(1, config.vocab_size, (n,)) for n in step_lens]
            batch = packed_batch(model, pack_rows(examples, args.row_length)) if packed else padded_batch(examples)
            inputs = to_device(batch, device)
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
                flops += step_flops(config, n_params, batch, step_lens, attention, packed)
    except torch.OutOfMemoryError:
        return {"error": "out of memory"}
    except Exception as error:  # a Liger or kernel incompatibility: record it, time the other cases
        if not liger:
            raise
        return {"error": f"{type(error).__name__}: {error}"[:300]}
    peak = max((v for k, v in PEAK_BF16.items() if k in (torch.cuda.get_device_name(0) if device == "cuda" else "")),
               default=None)
    return {
        "real_tokens_per_s": real / elapsed,
        "mfu": flops / elapsed / peak if peak else None,
        "attention_flops_over": "each example" if packed or "flash" in attention else "padded width",
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
    if device == "cuda" and attention_module.torch_flash_available():
        attentions.append(attention_module.register_torch_flash())  # what `model.attention: auto` picks for SFT
    ligers = [False] + ([True] if importable("liger_kernel") and device == "cuda" else [])
    results = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke)",
               "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
               "flops_formula": FLOPS_FORMULA, "cases": []}
    results["packing_check"] = {attention: check_packing(config, attention, device, row_length=1024)
                                for attention in attentions}
    print(json.dumps({"packing_check": results["packing_check"]}), flush=True)
    for liger in ligers:  # Liger patches transformers for good: all cases without it come first
        if liger:
            results["liger_check"] = check_liger(config, device)
            print(json.dumps({"liger_check": results["liger_check"]}), flush=True)
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
