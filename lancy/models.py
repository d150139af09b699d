"""Models: a small Llama built from params, or a pretrained model loaded from the Hub or a folder.

lancy classifies by generating the label, so it trains models that generate: decoder-only families (GPT-2,
DialoGPT, Qwen2/2.5/3, Llama 3.2, and mixture-of-experts ones such as Mixtral, Qwen3-MoE, DeepSeek-MoE) in
every stage, encoder-decoder ones (T5, BART, Switch Transformers) in sft and evaluate. Encoder-only models
(BERT, RoBERTa, DeBERTa) cannot generate and are refused.
"""
import functools
import inspect
from pathlib import Path

from lancy.errors import LancyError
from lancy.tokenization import model_not_found

ENCODER_ONLY = ("bert", "roberta", "deberta", "deberta-v2", "distilbert", "albert", "electra", "xlm-roberta",
                "camembert", "modernbert")
EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
EXPERTS_PER_TOKEN_KEYS = ("num_experts_per_tok", "moe_topk", "num_selected_experts")


def device_and_dtype() -> tuple[str, "torch.dtype"]:  # noqa: F821
    """cuda with bf16 where the GPU supports it; mps and cpu in fp32."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if torch.backends.mps.is_available():
        return "mps", torch.float32
    return "cpu", torch.float32


def attention_implementation(requested: str = "auto", padding_free: bool = False) -> str:
    """The attention to use. `auto`: on CUDA, flash_attention_2 with flash-attn installed, else for padding-free
    batches (`padding_free`: SFT's flattened packed rows) PyTorch's own FlashAttention kernels (lancy.attention,
    TORCH_FLASH), else sdpa; eager on MPS (where sdpa has produced NaNs); sdpa on the CPU. An explicit choice
    is kept if this machine can run it."""
    from lancy.attention import TORCH_FLASH, flash_attn_installed, register_torch_flash, torch_flash_available

    device = device_and_dtype()[0]
    flash = device == "cuda" and flash_attn_installed()
    if requested == "auto":
        if flash:
            return "flash_attention_2"
        if device == "cuda" and padding_free and torch_flash_available():
            return register_torch_flash()
        return "eager" if device == "mps" else "sdpa"
    if requested == "flash_attention_2" and not flash:
        raise LancyError("params key `model.attention` is flash_attention_2, which needs CUDA and the flash-attn "
                         "package (pip install -r requirements-gpu.txt); use auto to fall back to sdpa")
    if requested == TORCH_FLASH:
        if not torch_flash_available():
            raise LancyError("params key `model.attention` is torch_flash, which needs CUDA with FlashAttention "
                             "support and torch.nn.attention.varlen; use auto to fall back to sdpa")
        return register_torch_flash()
    return requested


def build_scratch_model(model_params, tokenizer, max_length: int, attention: str = "auto"):
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
    config._attn_implementation = attention_implementation(attention)
    return LlamaForCausalLM(config)


def embed_as_pieces(model, pieces: dict[int, list[int]]) -> None:
    """Sets each token's embedding (and output row, when not tied) to the mean of its pieces' rows.

    A label token that pretraining never saw has only been pushed down at every position, as all such tokens
    are, so ` positive` and ` negative` end up nearly parallel (cosine 0.93 measured) and SFT can stall at
    chance; their pieces' rows carry what pretraining learned and differ."""
    import torch

    weights = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not weights[0]:
        weights.append(output.weight)
    with torch.no_grad():
        for weight in weights:
            for token, ids in pieces.items():
                weight[token] = weight[ids].mean(dim=0)


def check_architecture(config, name: str, stage: str | None = None) -> None:
    """Refuse, with one line saying why, a model lancy cannot train to generate labels (in this stage)."""
    if config.model_type in ENCODER_ONLY:
        raise LancyError(
            f"`{name}` is an encoder-only model ({config.model_type}): it cannot generate text, and lancy classifies "
            f"by generating the label; use a decoder-only (GPT-2, Qwen, Llama) or encoder-decoder (T5, BART) model"
        )
    if is_seq2seq(config) and stage in ("pretrain", "grpo"):
        hint = "set `pretrain.max_steps: 0` to hand it to sft unchanged" if stage == "pretrain" else (
            "stop after sft: `dvc repro evaluate@sft`")
        raise LancyError(
            f"`{name}` is an encoder-decoder model ({config.model_type}): the {stage} stage trains decoder-only "
            f"(causal) models; {hint}"
        )


def is_seq2seq(config) -> bool:
    return bool(getattr(config, "is_encoder_decoder", False))


def moe_facts(model) -> dict:
    """Mixture-of-experts facts from the config: experts, experts per token (1 where the config names none: Switch
    Transformers routes each token to one expert), active parameters, and whether a router loss is trained."""
    config = model.config
    experts = next((getattr(config, k) for k in EXPERT_COUNT_KEYS if getattr(config, k, None)), None)
    if not experts:
        return {"moe": False}
    per_token = next((getattr(config, k) for k in EXPERTS_PER_TOKEN_KEYS if getattr(config, k, None)), 1)
    expert_params = sum(logical_numel(p) for n, p in model.named_parameters() if ".experts." in n)
    total = sum(logical_numel(p) for p in model.parameters())
    return {
        "moe": True, "experts": experts, "experts_per_token": per_token,
        "active_params": int(total - expert_params * (1 - per_token / experts)),
        "router_aux_loss": has_router_loss(config) and bool(getattr(config, "output_router_logits", False)),
    }


LOGIT_KEYS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def plain_lm_head(model) -> bool:
    """Whether a model's logits are its output embeddings' plain linear map of the last hidden states: a
    decoder-only model without scaled or soft-capped logits. Such a head can be applied to the positions that need
    it alone (lancy.training.chunked_lm_loss, lancy.evaluation's losses)."""
    import torch

    config = model.config.get_text_config()
    return (not model.config.is_encoder_decoder and isinstance(model.get_output_embeddings(), torch.nn.Linear)
            and not any(getattr(config, key, None) for key in LOGIT_KEYS))


def labelled_hidden_states(model, labels, *args, **kwargs):
    """For a plain LM head (plain_lm_head): the backbone's last hidden states at the positions whose next token is
    labelled (not -100, transformers' ignored label and lancy.packing.IGNORE), and those next tokens. The head then
    projects these rows alone instead of every position. `args` and `kwargs` go to the backbone."""
    hidden = model.base_model(*args, **kwargs).last_hidden_state[:, :-1]
    targets = labels[:, 1:]  # the next token of each position; the last position has none
    labelled = targets != -100
    return hidden[labelled], targets[labelled]


def has_router_loss(config) -> bool:
    """Whether the family adds a router load-balancing loss to the LM loss (Mixtral, Qwen3-MoE, Switch
    Transformers: `router_aux_loss_coef`). transformers' DeepSeek-V2/V3 have none: DeepSeek-V3 balances its
    experts with a routing bias instead of an auxiliary loss."""
    return bool(getattr(config, "router_aux_loss_coef", 0))


def memory_estimate(total_params: int) -> dict[str, float]:
    """GiB for the weights alone at each precision (training adds gradients, optimizer state, activations)."""
    return {f"weights_gib_{name}": total_params * size / 2**30
            for name, size in (("fp32", 4), ("bf16", 2), ("int8", 1), ("int4", 0.5))}


def load_model(name: str, attention: str = "auto", quantize: str = "none", stage: str | None = None,
               padding_free: bool = False):
    """A causal LM from a local folder or a Hub id, with fp32 weights (training autocasts to bf16 on CUDA).

    `padding_free`: it will be trained on flattened, padding-free batches (what `auto` attention considers).

    `quantize` (4bit, 8bit) loads the weights through bitsandbytes, for QLoRA. A folder holding LoRA
    adapters alone (saved with `lora.merge: false`) is loaded on its base model and merged.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    if (Path(name) / "adapter_config.json").exists():
        return _load_adapters(name, attention)  # loaded to evaluate or go on training: never padding-free
    config = load_config(name, stage)
    auto = AutoModelForSeq2SeqLM if is_seq2seq(config) else AutoModelForCausalLM
    router_loss = has_router_loss(config) and any(getattr(config, k, None) for k in EXPERT_COUNT_KEYS)
    if router_loss:
        config.output_router_logits = True  # MoE: the router's load-balancing loss joins the LM loss in training
    try:
        model = auto.from_pretrained(name, config=config, dtype="float32",
                                     attn_implementation=_family_attention(config, attention, padding_free),
                                     quantization_config=_quantization(quantize))
    except (OSError, ValueError) as error:
        raise LancyError(model_not_found(name, error)) from None
    if router_loss and _forward_default(model, "output_router_logits") is False:
        # Switch Transformers reads the flag from forward's argument alone (default False), not from its config
        model.forward = functools.partial(model.forward, output_router_logits=True)
    if quantize != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def _family_attention(config, attention: str, padding_free: bool = False) -> str:
    """`auto` falls back to what the family implements (T5 has no flash attention, Switch Transformers neither
    flash nor sdpa attention); an explicit choice is passed on as it is."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING

    implementation = attention_implementation(attention, padding_free and not is_seq2seq(config))
    mapping = MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING if is_seq2seq(config) else MODEL_FOR_CAUSAL_LM_MAPPING
    if attention != "auto" or type(config) not in mapping:
        return implementation
    family = mapping[type(config)]
    if "flash" in implementation and not family._supports_flash_attn:
        implementation = "sdpa"
    return implementation if implementation != "sdpa" or family._supports_sdpa else "eager"


def _forward_default(model, argument: str):
    parameter = inspect.signature(model.forward).parameters.get(argument)
    return parameter.default if parameter is not None else None


def _quantization(quantize: str):
    if quantize == "none":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if device_and_dtype()[1] == torch.bfloat16 else torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)


def _load_adapters(folder: str, attention: str):
    """Adapters saved alone: their base model (named in adapter_config.json) with the adapters merged in."""
    import json

    from peft import PeftModel

    base = json.loads((Path(folder) / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(load_model(base, attention), folder).merge_and_unload()


def load_config(name: str, stage: str | None = None):
    """The config of a Hub id or local folder, checked to be a model lancy can train (in this stage)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise LancyError(model_not_found(name, error)) from None
    check_architecture(config, name, stage)
    return config


def logical_numel(param) -> int:
    """A parameter's count of weights: bitsandbytes packs two 4-bit weights per byte of its storage, so a 4-bit
    `Params4bit` holds half as many elements as weights (counted as PEFT's get_nb_trainable_parameters does)."""
    if param.__class__.__name__ == "Params4bit":
        return param.numel() * 2 * param.element_size()
    return param.numel()


def parameter_counts(model) -> dict[str, float]:
    total = sum(logical_numel(p) for p in model.parameters())
    trainable = sum(logical_numel(p) for p in model.parameters() if p.requires_grad)
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
