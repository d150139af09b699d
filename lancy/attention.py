"""Attention implementations lancy registers with transformers, and the choice behind `model.attention: auto`.

`auto` on CUDA: flash_attention_2 when the flash-attn package is importable; otherwise, for packed,
padding-free batches (SFT with `tokenize.packing`), TORCH_FLASH, PyTorch's own FlashAttention kernels behind
transformers' flash-attention code path; sdpa otherwise. flash-attn has no wheels for every torch
(none for the pinned one), and packed batches under sdpa need a block-diagonal mask that sdpa's flash kernel
cannot take: 24,555 against 77,868 real tokens/s for packed 0.5B SFT on an H200 (docs/performance.md).

`register_flash(name, dense, varlen)` registers transformers' flash-attention path under a name, with the given
kernels in place of flash-attn's, the way transformers registers a hub flash kernel
(`hub_kernels.load_and_register_attn_kernel`): `flash_attention_forward` in the AttentionInterface and
`flash_attention_mask` in the mask interface, under a name holding "flash" (what `is_flash_attention_requested`
looks for). Everything transformers decides for flash_attention_2 is then decided for it: no mask from
restarting position_ids, the varlen kernel for `cu_seq_lens_q/k` (lancy.packing.FlattenedCollator's
padding-free batches), the dense kernel for rows of one sequence each. TORCH_FLASH is that registration with
`torch.nn.attention.varlen.varlen_attn` and sdpa's flash backend (`torch_kernels`); tests/test_packing.py
registers CPU reference kernels through the same function and checks packed logits against each example alone.
"""
import importlib.util

TORCH_FLASH = "torch_flash"

_KERNELS: dict[str, tuple] = {}  # registered name -> (dense kernel, varlen kernel)


def register_flash(name: str, dense, varlen) -> None:
    """Register transformers' flash-attention path under `name` (holding "flash"), with these kernels:
    dense(q, k, v, dropout_p, softmax_scale, causal) on [batch, tokens, heads, head_dim] and
    varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p, softmax_scale, causal)
    on [all tokens, heads, head_dim]."""
    from transformers import AttentionInterface
    from transformers import modeling_flash_attention_utils as flash_utils
    from transformers.integrations.flash_attention import flash_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    assert "flash" in name, "transformers takes its flash-attention path only for names holding 'flash'"
    _KERNELS[name] = (dense, varlen)
    if not getattr(flash_utils._lazy_imports, "lancy", False):  # wrap transformers' kernel loader once
        original = flash_utils._lazy_imports

        def lazy_imports(implementation, *args, **kwargs):
            if implementation in _KERNELS:
                return (*_KERNELS[implementation], None, flash_utils._pad_input, flash_utils._unpad_input)
            return original(implementation, *args, **kwargs)

        lazy_imports.lancy = True
        flash_utils._lazy_imports = lazy_imports
    flash_utils._loaded_implementation = None  # the next forward loads this name's kernels, not a cached set
    AttentionInterface.register(name, flash_attention_forward)
    AttentionMaskInterface.register(name, flash_attention_mask)


def unregister_flash(name: str) -> None:
    from transformers import AttentionInterface
    from transformers import modeling_flash_attention_utils as flash_utils
    from transformers.masking_utils import AttentionMaskInterface

    _KERNELS.pop(name, None)
    AttentionInterface._global_mapping.pop(name, None)
    AttentionMaskInterface._global_mapping.pop(name, None)
    flash_utils._loaded_implementation = None


def torch_kernels(varlen_attn=None) -> tuple:
    """TORCH_FLASH's kernels: `varlen_attn` (torch.nn.attention.varlen's, by default) for variable lengths,
    sdpa's flash backend for dense rows. Grouped-query attention repeats each key/value head for its query
    heads where varlen_attn does not take `enable_gqa`."""
    import inspect

    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if varlen_attn is None:
        from torch.nn.attention.varlen import varlen_attn
    options = inspect.signature(varlen_attn).parameters

    def heads(q, kv):
        return kv if "enable_gqa" in options else kv.repeat_interleave(q.shape[-2] // kv.shape[-2], dim=-2)

    def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0, softmax_scale=None,
               causal=False, **_):
        kwargs = {"window_size": (-1, 0) if causal else (-1, -1)} if "window_size" in options else {"is_causal": causal}
        if "enable_gqa" in options:
            kwargs["enable_gqa"] = q.shape[1] != k.shape[1]
        return varlen_attn(q, heads(q, k), heads(q, v), cu_seqlens_q.int(), cu_seqlens_k.int(), int(max_seqlen_q),
                           int(max_seqlen_k), scale=softmax_scale, **kwargs)

    def dense(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **_):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), is_causal=causal,
                                                 scale=softmax_scale, enable_gqa=True)
        return out.transpose(1, 2)

    return dense, varlen


def torch_flash_available() -> bool:
    """Whether TORCH_FLASH can run here: CUDA with FlashAttention support, and torch.nn.attention.varlen."""
    import torch

    return (torch.cuda.is_available() and torch.backends.cuda.is_flash_attention_available()
            and importlib.util.find_spec("torch.nn.attention.varlen") is not None)


def register_torch_flash() -> str:
    """Register TORCH_FLASH (idempotent); its name."""
    if TORCH_FLASH not in _KERNELS:
        register_flash(TORCH_FLASH, *torch_kernels())
    return TORCH_FLASH


def flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None
