"""One script per pipeline stage (`python -m stages.<name>`).

lancy is imported first, before a stage imports transformers' Trainer, so that bitsandbytes loads only when
a stage quantizes (lancy.lazy_imports.defer_bitsandbytes).
"""
import lancy  # noqa: F401
