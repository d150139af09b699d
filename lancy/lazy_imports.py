"""Keeping bitsandbytes out of stages that do not quantize.

bitsandbytes' import costs seconds and prints a "Failed to load CPU gemm_4bit_forward" warning. Three places
import it whenever it is installed, quantized or not:
- `import peft` (peft/helpers.py, for a weight-analysis helper lancy does not use), and transformers' Trainer
  imports peft whenever it is installed;
- PEFT's LoRA layer dispatch (`peft.tuners.lora.model`), which checks for bitsandbytes' layer types;
- TRL's vLLM generation module, which GRPOTrainer imports (lancy does not generate with vLLM).
A model can only hold bitsandbytes layers once bitsandbytes is imported (quantized loading imports it), so in
those three places "available" is made to mean "available and already imported". `lancy/__init__.py`
installs the hook below, so it is in place before any stage imports transformers, peft or trl.
"""
import sys

# The modules whose import is run with bitsandbytes unavailable unless it is already imported.
DEFERRED = ("peft", "trl.generation.vllm_generation")


def defer_bitsandbytes() -> None:
    """Keep bitsandbytes out of `import peft`, LoRA's dispatch and TRL's GRPOTrainer, so that it loads only where
    it is used: quantized loading (lancy.models.load_model)."""
    if not any(isinstance(f, _WithoutBitsandbytes) for f in sys.meta_path):
        sys.meta_path.insert(0, _WithoutBitsandbytes())


def _if_imported(available):
    """`available`, but False until bitsandbytes has been imported."""
    def imported_and_available(*args, **kwargs) -> bool:
        return "bitsandbytes" in sys.modules and available(*args, **kwargs)
    return imported_and_available


class _WithoutBitsandbytes:
    """An import hook for the DEFERRED modules alone: their usual spec, with a loader that runs them while
    bitsandbytes is unavailable (peft takes its own fallback, `bnb = None`; TRL skips its import)."""

    def __init__(self, loader=None):
        self.loader = loader

    def find_spec(self, name, path=None, target=None):
        if name not in DEFERRED or name in sys.modules:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _WithoutBitsandbytes(spec.loader)
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if module.__name__ == "peft":
            self._exec_peft(module)
        else:
            import transformers

            available = transformers.is_bitsandbytes_available
            transformers.is_bitsandbytes_available = _if_imported(available)  # bound by the module's import
            try:
                self.loader.exec_module(module)
            finally:
                transformers.is_bitsandbytes_available = available

    def _exec_peft(self, module):
        hidden = "bitsandbytes" not in sys.modules
        if hidden:
            sys.modules["bitsandbytes"] = None  # `import bitsandbytes` raises ImportError
        try:
            self.loader.exec_module(module)
        finally:
            if hidden and "bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None:
                del sys.modules["bitsandbytes"]
        lora = sys.modules.get("peft.tuners.lora.model")
        if lora is not None:  # the dispatch asks on every LoRA layer it creates
            lora.is_bnb_available = _if_imported(lora.is_bnb_available)
            lora.is_bnb_4bit_available = _if_imported(lora.is_bnb_4bit_available)
