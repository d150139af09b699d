"""pretrain: a causal LM on the pretraining blocks, from scratch (model.name: scratch) or continued.

`pretrain.max_steps: 0` skips pretraining: the model goes to sft as it is (the way for encoder-decoder models).

Writes models/pretrain/ (model + tokenizer), metrics/pretrain/ (DVCLive) and logs/pretrain/ (TensorBoard).
"""
import json
import math
from pathlib import Path

from transformers import Trainer, TrainingArguments, set_seed

from lancy import params as P
from lancy.errors import run_stage
from lancy.files import require
from lancy.models import build_scratch_model, embed_as_pieces, load_model
from lancy.packing import packed_collator
from lancy.tables import read_table, values_present
from lancy.tokenization import added_token_pieces, load_tokenizer
from lancy.training import (
    callbacks,
    chunked_lm_loss,
    data_shares,
    fingerprint,
    finish,
    keep_untrained,
    liger_arguments,
    run_facts,
    stage_seed,
    train,
    training_arguments,
)

PARAMS = (
    "seed", "model.name", "model.attention", "model.liger_kernel", "model.hidden_size", "model.num_layers",
    "model.num_heads", "model.intermediate_size", "tokenize.max_length", "pretrain",
)
DATA, OUT, CHECKPOINTS = Path("data/tokenized"), Path("models/pretrain"), Path("checkpoints/pretrain")


def main() -> None:
    p = P.load(PARAMS)
    pretraining = bool(p.pretrain.max_steps or p.pretrain.epochs)
    liger = liger_arguments(p.model.liger_kernel) if pretraining else {}
    inputs = ("tokenizer", "pretrain", "pretrain_val", "pretrain_sources.json")
    require(*(DATA / name for name in inputs))
    tokenizer = load_tokenizer(str(DATA / "tokenizer"))
    set_seed(stage_seed(p.pretrain, p.seed))  # the scratch model's initial weights come from the seed, not chance
    if p.model.name == "scratch":
        model = build_scratch_model(p.model, tokenizer, p.tokenize.max_length, p.model.attention)
    else:  # with max_steps 0, an encoder-decoder model passes through to sft
        model = load_model(p.model.name, p.model.attention, stage="pretrain" if pretraining else None)
    train_set = read_table(DATA / "pretrain")
    # Validation blocks from train texts: the eval loss and load_best_model_at_end never see the held-out
    # rows that `evaluate` reports.
    eval_set = read_table(DATA / "pretrain_val")

    mixture = data_shares(json.loads((DATA / "pretrain_sources.json").read_text()))
    chunked = not liger and p.pretrain.chunked_loss and chunked_lm_loss(model)  # False where it does not apply
    facts = run_facts(model, p.pretrain, p.tokenize.max_length, train_rows=len(train_set), data=mixture,
                      chunked_loss=chunked, liger_kernel=bool(liger))
    if not pretraining:
        keep_untrained(model, tokenizer, OUT, "pretrain", facts)
        return
    eval_steps = p.pretrain.eval_steps or max(1, p.pretrain.max_steps // 4)
    arguments = training_arguments(p.pretrain, CHECKPOINTS, p.seed)
    by_epoch = p.pretrain.epochs > 0 and not p.pretrain.eval_steps
    arguments.update(
        eval_strategy="epoch" if by_epoch else "steps", eval_steps=eval_steps,
        per_device_eval_batch_size=p.pretrain.batch_size, logging_steps=p.pretrain.logging_steps or eval_steps,
        load_best_model_at_end=p.pretrain.load_best_model_at_end, metric_for_best_model="eval_loss",
    )
    if p.pretrain.load_best_model_at_end:  # the best checkpoint is chosen among the evaluated ones
        arguments.update(save_strategy=arguments["eval_strategy"], save_steps=eval_steps)
    args = TrainingArguments(**arguments, **liger)
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=packed_collator(model, tokenizer.pad_token_id),
                      callbacks=callbacks("pretrain", facts))
    run_id = fingerprint(P.to_dict(p), [DATA / "tokenizer", DATA / "pretrain", DATA / "pretrain_val"])
    resumed_from = train(trainer, CHECKPOINTS, run_id)
    eval_loss = trainer.evaluate()["eval_loss"]  # validation loss, logged as eval/loss at the last step
    # label tokens (tokenize.label_tokens) the corpus never had start as their pieces; no scan of the corpus without
    if p.model.name == "scratch" and (pieces := added_token_pieces(tokenizer)):
        seen = values_present(train_set, "input_ids", pieces)
        embed_as_pieces(trainer.model, {token: ids for token, ids in pieces.items() if token not in seen})
    finish(trainer, tokenizer, OUT, CHECKPOINTS,
           {**facts, "val_perplexity": math.exp(eval_loss), "resumed_from_step": resumed_from})


if __name__ == "__main__":
    run_stage(main)
