"""sft: supervised fine-tuning of models/pretrain on the packed SFT rows, loss on completions only.

Writes models/sft/ (LoRA adapters merged in, or alone), metrics/sft/ (DVCLive) and logs/sft/ (TensorBoard).
"""
import json
from pathlib import Path

from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

from lancy import params as P
from lancy.errors import run_stage
from lancy.files import require
from lancy.models import apply_lora, is_seq2seq, load_model
from lancy.packing import packed_collator
from lancy.tables import read_table
from lancy.tokenization import load_tokenizer
from lancy.training import (
    FusedLossTrainer,
    callbacks,
    data_shares,
    fingerprint,
    finish,
    fused_lm_head,
    liger_arguments,
    run_facts,
    stage_seed,
    train,
    training_arguments,
)

PARAMS = ("seed", "model.attention", "model.liger_kernel", "tokenize.max_length", "sft")
BASE, DATA = Path("models/pretrain"), Path("data/tokenized/sft")
SOURCES = Path("data/tokenized/sft_sources.json")
OUT, CHECKPOINTS = Path("models/sft"), Path("checkpoints/sft")


def main() -> None:
    p = P.load(PARAMS)
    require(BASE, DATA, SOURCES)
    liger = liger_arguments(p.model.liger_kernel)
    tokenizer = load_tokenizer(str(BASE))
    set_seed(stage_seed(p.sft, p.seed))  # LoRA adapters start from seeded random weights
    model = load_model(str(BASE), p.model.attention, p.sft.lora.quantize, padding_free=True)  # causal: flattened
    causal = not is_seq2seq(model.config)
    fused = causal and not liger  # Liger brings its own fused linear cross-entropy
    if fused:  # the loss projects only the completions' positions through the LM head
        fused_lm_head(model)
    model = apply_lora(model, p.sft.lora)
    train_set = read_table(DATA)
    mixture = data_shares(json.loads(SOURCES.read_text()))
    facts = run_facts(model, p.sft, p.tokenize.max_length, train_rows=len(train_set), data=mixture,
                      liger_kernel=bool(liger))
    args = TrainingArguments(**training_arguments(p.sft, CHECKPOINTS, p.seed), **liger, remove_unused_columns=False)
    if causal:
        collator = packed_collator(model, tokenizer.pad_token_id)  # as its attention keeps examples apart
    else:  # encoder-decoder: prompts in, completions as labels, padded per batch
        collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    trainer = (FusedLossTrainer if fused else Trainer)(
        model=model, args=args, train_dataset=train_set, data_collator=collator, callbacks=callbacks("sft", facts))
    resumed_from = train(trainer, CHECKPOINTS, fingerprint(P.to_dict(p), [BASE, DATA]))
    finish(trainer, tokenizer, OUT, CHECKPOINTS, {**facts, "resumed_from_step": resumed_from}, p.sft.lora, str(BASE))


if __name__ == "__main__":
    run_stage(main)
