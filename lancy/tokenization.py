"""Tokenizers: trained from scratch on the pretraining corpus, or the named model's own."""
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from lancy.errors import LancyError
from lancy.params import looks_like_path
from lancy.tables import rng, text_lengths

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def training_texts(corpus, max_chars: int, seed: int) -> Iterator[list[str]]:
    """Batches of the corpus texts a tokenizer trains on: all of them when they hold at most max_chars
    characters, else a seeded sample of whole documents holding at most max_chars; in corpus order either way.
    Only the sample's texts are read, a batch at a time."""
    sizes = text_lengths(corpus, "text")
    rows = corpus
    if sizes.sum() > max_chars:
        order = rng(seed, "tokenizer").permutation(len(sizes))
        rows = corpus.select(np.sort(order[: int(np.searchsorted(np.cumsum(sizes[order]), max_chars, "right"))]))
    for batch in rows.select_columns(["text"]).iter(batch_size=1000):
        yield batch["text"]


def task_texts(rows) -> Iterator[list[str]]:
    """Batches of the SFT rows' prompt + completion texts: with them in a tokenizer's training texts, the label
    words and answer formats become whole tokens (` positive` is 4 tokens of a corpus-only tokenizer, 1 then)."""
    for batch in rows.select_columns(["prompt", "completion"]).iter(batch_size=1000):
        yield [prompt + completion for prompt, completion in zip(batch["prompt"], batch["completion"], strict=True)]


def add_label_tokens(tokenizer, *tables) -> list[str]:
    """Makes every label word of the tables' `labels` columns that the tokenizer splits one token of its own,
    with its leading space as completions write it (` positive`), matched as a whole word only (` positively`
    is split as before). Text without a label word tokenizes as before. Returns the tokens added."""
    import pyarrow.compute as pc
    from tokenizers import AddedToken

    words = sorted({w for t in tables for w in pc.unique(pc.list_flatten(t.data.column("labels"))).to_pylist()})
    split = [" " + w for w in words if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) > 1]
    tokenizer.add_tokens([AddedToken(word, single_word=True, normalized=False) for word in split])
    return split


def added_token_pieces(tokenizer) -> dict[int, list[int]]:
    """Each token `add_label_tokens` added (the non-special added tokens) with the ids of the pieces the trained
    BPE alone splits its text into: ` positive` -> ` pos`, `itive`."""
    backend = tokenizer.backend_tokenizer
    pieces = {}
    for token_id, token in tokenizer.added_tokens_decoder.items():
        if not token.special:
            words = backend.pre_tokenizer.pre_tokenize_str(token.content)
            pieces[token_id] = [piece.id for word, _ in words for piece in backend.model.tokenize(word)]
    return pieces


def train_tokenizer(texts: Iterable[str] | Iterable[list[str]], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts` (or batches of texts), wrapped for transformers (EOS and
    PAD tokens set)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS, PAD], show_progress=False
    )
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS, pad_token=PAD)


def load_tokenizer(name: str):
    """The tokenizer of a Hub model or local folder; a missing pad token falls back to EOS."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise LancyError(model_not_found(name, error)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_not_found(name: str, error: Exception) -> str:
    """The one-line message for a model name that is neither a local folder nor reachable on the Hub."""
    if not Path(name).exists() and looks_like_path(name):
        return f"model folder `{name}` (params key `model.name`) does not exist; give an existing folder or a Hub id"
    if Path(name).exists():
        reason = str(error).splitlines()[0][:160]
        return f"model folder `{name}` (params key `model.name`) holds no loadable model or tokenizer: {reason}"
    return (
        f"params key `model.name` is `{name}`, which is not a local folder and could not be loaded from the "
        f"Hugging Face Hub (offline, or a wrong id); use `scratch`, a local folder, or a reachable Hub id"
    )
