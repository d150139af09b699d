"""Models: a small Llama built from params, or a pretrained model loaded from the Hub or a folder."""
from lancy.errors import LancyError
from lancy.tokenization import model_not_found


def device_and_dtype() -> tuple[str, "torch.dtype"]:  # noqa: F821
    """cuda with bf16 where the GPU supports it; mps and cpu in fp32."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if torch.backends.mps.is_available():
        return "mps", torch.float32
    return "cpu", torch.float32


def attention_implementation() -> str:
    """sdpa everywhere but MPS (eager there: sdpa has produced NaNs on MPS)."""
    return "eager" if device_and_dtype()[0] == "mps" else "sdpa"


def build_scratch_model(model_params, tokenizer, max_length: int):
    """A Llama-style decoder sized by params (`model.hidden_size`, ...), randomly initialized."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=model_params.hidden_size,
        num_hidden_layers=model_params.num_layers,
        num_attention_heads=model_params.num_heads,
        num_key_value_heads=model_params.num_heads,
        intermediate_size=model_params.intermediate_size,
        max_position_embeddings=max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    config._attn_implementation = attention_implementation()
    return LlamaForCausalLM(config)


def load_model(name: str):
    """A causal LM from a local folder or a Hub id, with fp32 weights (training autocasts to bf16 on CUDA)."""
    from transformers import AutoModelForCausalLM

    try:
        attention = attention_implementation()
        return AutoModelForCausalLM.from_pretrained(name, dtype="float32", attn_implementation=attention)
    except (OSError, ValueError) as error:
        raise LancyError(model_not_found(name, error)) from None


def parameter_counts(model) -> dict[str, float]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total_params": total, "trainable_params": trainable, "trainable_share": trainable / max(1, total)}


def apply_lora(model, lora):
    """Wrap the model with LoRA adapters when `lora.enabled` (params `<stage>.lora.*`), else return it as is."""
    if not lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)
