"""Keeping bitsandbytes out of stages that do not quantize.

peft 0.21 imports bitsandbytes on `import peft` (peft/helpers.py, for a weight-analysis helper lancy does not
use), and transformers' Trainer imports peft whenever it is installed, so every training stage paid
bitsandbytes' import (~3 s) and its "Failed to load CPU gemm_4bit_forward" warning, quantized or not.
`lancy/__init__.py` installs the hook below, so it is in place before any stage imports transformers.
"""
import sys


def defer_bitsandbytes() -> None:
    """Keep bitsandbytes out of `import peft`, so that it loads only where it is used: quantized loading, PEFT's
    LoRA layer dispatch (which checks for its layer types, quantized or not) and TRL's GRPOTrainer module.

    While peft's package runs, `import bitsandbytes` fails and peft takes its own fallback (`bnb = None`).
    """
    if "peft" not in sys.modules and not any(isinstance(f, _PeftWithoutBitsandbytes) for f in sys.meta_path):
        sys.meta_path.insert(0, _PeftWithoutBitsandbytes())


class _PeftWithoutBitsandbytes:
    """An import hook for `peft` alone: its usual spec, whose loader runs with `import bitsandbytes` failing."""

    def __init__(self, loader=None):
        self.loader = loader

    def find_spec(self, name, path=None, target=None):
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path) if name == "peft" else None
        if spec is not None:
            spec.loader = _PeftWithoutBitsandbytes(spec.loader)
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _PeftWithoutBitsandbytes)]
        hidden = "bitsandbytes" not in sys.modules
        if hidden:
            sys.modules["bitsandbytes"] = None  # `import bitsandbytes` raises ImportError
        try:
            self.loader.exec_module(module)
        finally:
            if hidden and "bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None:
                del sys.modules["bitsandbytes"]
