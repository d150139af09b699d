"""The params.yaml schema: every key, its type and default, validated before a stage writes anything.

A stage declares the keys it reads (`PARAMS` in its script, the same list as its `params:` in dvc.yaml)
and gets a view holding only those keys, so a stage cannot silently depend on an undeclared param.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from lancy.errors import LancyError

DATA_SOURCES = ("embedded", "hub", "local")
ENGINES = ("datasets", "ray")
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2", "torch_flash")
SEARCH_METRICS = ("loss", "score")  # the mixture search's target: answer losses or headline scores
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay")


@dataclass(frozen=True)
class Data:
    source: str = "embedded"  # embedded (synthetic stand-ins) | hub (datasets.load_dataset) | local (files)
    train_rows: int = 2000  # rows kept of each dataset's train split (a cap for hub and local)
    test_rows: int = 500  # rows kept of each dataset's held-out split (a cap for hub and local): every one gets its
    # answer loss, and up to evaluate.max_rows a generated answer
    dataset_test_rows: dict[str, int] = field(default_factory=dict)  # dataset -> its own test_rows (see params.yaml)
    stream_chars: int = 20_000_000  # streamed corpora stop after this many characters of text
    local: dict[str, str] = field(default_factory=dict)  # local: dataset -> folder of <split>.jsonl/csv/parquet
    local_splits: dict[str, str] = field(default_factory=dict)  # local: dataset -> "train,test" file stems
    engine: str = "datasets"  # the mix and tokenize maps: datasets (num_proc processes) | ray (Ray Data, docs/ray.md)


@dataclass(frozen=True)
class Mix:
    sft_rows: int = 3000  # size of the SFT mixture, shared out by `mixture` weights
    rl_rows: int = 256  # size of the GRPO prompt set, same weights, disjoint from the SFT rows
    corpus_chars: int = 1_000_000  # size of the pretraining corpus in characters, shared out by `corpus`
    upsample: bool = False  # allow sampling a source with replacement when it has too few rows


@dataclass(frozen=True)
class Model:
    name: str = "scratch"  # scratch | a Hub id | a local folder
    attention: str = "auto"  # auto | sdpa | eager | flash_attention_2 | torch_flash (lancy.attention)
    liger_kernel: bool = False  # CUDA: Liger's Triton kernels in pretrain and SFT (lancy.training.liger_arguments)
    vocab_size: int = 4096  # scratch only: size of the BPE tokenizer trained on the corpus
    hidden_size: int = 128  # scratch only: Llama-style architecture
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512


@dataclass(frozen=True)
class Tokenize:
    max_length: int = 256  # pretraining block size and SFT packing bin size
    packing: bool = True  # false: one document / example per row, padded per batch
    tokenizer_sample_chars: int = 10_000_000  # scratch: the BPE tokenizer trains on a seeded sample this large
    tokenizer_on_tasks: bool = False  # scratch: the tokenizer also trains on the SFT prompts and completions
    label_tokens: bool = False  # scratch: each label word of the task rows becomes one token; other text as before


@dataclass(frozen=True)
class Lora:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"
    quantize: str = "none"  # QLoRA: 4bit (nf4) or 8bit base weights through bitsandbytes
    merge: bool = True  # merge the adapters into the saved model; false saves the adapters alone


@dataclass(frozen=True)
class Train:
    """What every training stage shares (the sections below add their own keys and defaults)."""

    max_steps: int = 200
    seed: int = -1  # -1: the run's `seed`; another value re-draws this stage's randomness alone (a replicate)
    epochs: float = 0.0  # > 0: train for this many passes over the data instead of max_steps
    batch_size: int = 16  # per device (GRPO: completions per device)
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    lr_scheduler: str = "cosine"  # any transformers scheduler name: linear, cosine, constant_with_warmup, ...
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    logging_steps: int = 10  # pretrain: 0 logs at the eval frequency, as the original did
    save_steps: int = 0  # 0: a checkpoint every quarter of max_steps
    save_total_limit: int = 2
    activation_checkpointing: bool = False  # recompute activations in the backward pass: less memory, slower steps


@dataclass(frozen=True)
class Pretrain(Train):
    # max_steps 0: no pretraining, the model (scratch or model.name) goes to sft as it is
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    eval_steps: int = 0  # 0: every quarter of max_steps
    load_best_model_at_end: bool = False  # keep the checkpoint with the lowest validation loss (a slice of train text)
    chunked_loss: bool = True  # CPU: the loss through PyTorch's chunked linear cross-entropy (lancy.training)


@dataclass(frozen=True)
class Sft(Train):
    max_steps: int = 400
    batch_size: int = 8
    lora: Lora = field(default_factory=Lora)


@dataclass(frozen=True)
class Grpo(Train):
    lora: Lora = field(default_factory=Lora)
    max_steps: int = 24
    num_generations: int = 8  # group size
    beta: float = 0.0  # KL coefficient
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.0
    max_completion_length: int = 8
    temperature: float = 1.5
    min_p: float = 0.0  # > 0: sample only tokens at least this share of the likeliest one's probability
    logging_steps: int = 1
    format_weight: float = 0.0  # > 0 adds a format reward (the task's answer shape) with this weight
    code_execution: bool = True  # run code rows' unit tests on completions in lancy.sandbox; false: compile only
    reward_model: str = ""  # a local folder with a sequence-classification model: its score is one more reward


@dataclass(frozen=True)
class Launch:
    """How training stages run: processes per machine, machines, and an optional accelerate config."""

    processes: int = 1  # per machine (GPUs, or CPU processes over gloo)
    machines: int = 1
    machine_rank: int = 0
    main_address: str = "127.0.0.1"
    main_port: int = 29500
    config: str = ""  # an accelerate config file, e.g. configs/accelerate/fsdp.yaml or deepspeed_zero2.yaml


@dataclass(frozen=True)
class Evaluate:
    max_rows: int = 1500  # held-out rows per dataset that also get a generated answer (answer losses: all rows)
    batch_size: int = 32
    max_new_tokens: int = 64  # for math; classification uses the longest label's token count
    generate: bool = True  # false: no generation, only answer losses and perplexity (mixture-search proxies)
    generate_pretrain: bool = False  # the pretrained model too: true for a base model that answers zero-shot


@dataclass(frozen=True)
class Search:
    """Mixture search (lancy.search): read by its commands, never by a stage."""

    proxies: int = 16  # proxy experiments sampled
    seed: int = 0
    model: str = "sft"  # whose held-out results make the target: pretrain, sft or grpo
    metric: str = "loss"  # loss: geometric mean answer loss (lower is better) | score: mean headline score
    target: list[str] = field(default_factory=list)  # datasets averaged into the target; []: those searched
    proxy: dict[str, object] = field(default_factory=dict)  # params key -> value for every proxy run
    replicates: int = 2  # extra training seeds of the first proxy (seed noise), and of the proposal and baseline


@dataclass(frozen=True)
class Params:
    seed: int = 42
    num_proc: int = 0  # processes of the data stages' batched maps; 0: all the machine's cores
    data: Data = field(default_factory=Data)
    mixture: dict[str, float] = field(default_factory=dict)
    rl_mixture: dict[str, float] = field(default_factory=dict)  # GRPO prompts' shares; empty: those of mixture
    corpus: dict[str, float] = field(default_factory=dict)
    mix: Mix = field(default_factory=Mix)
    model: Model = field(default_factory=Model)
    tokenize: Tokenize = field(default_factory=Tokenize)
    pretrain: Pretrain = field(default_factory=Pretrain)
    sft: Sft = field(default_factory=Sft)
    grpo: Grpo = field(default_factory=Grpo)
    evaluate: Evaluate = field(default_factory=Evaluate)
    launch: Launch = field(default_factory=Launch)
    prompts: dict[str, str] = field(default_factory=dict)  # dataset -> prompt template overriding the catalog's
    search: Search = field(default_factory=Search)


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise LancyError(f"params key `{where}` must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise LancyError(
            f"unknown params key `{_join(where, unknown[0])}` in params.yaml; known keys here: {', '.join(fields)}"
        )
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        key, value = _join(where, name), raw[name]
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if dataclasses.is_dataclass(globals().get(kind)):
            values[name] = _build(globals()[kind], value, key)
        elif kind in PER_DATASET:
            values[name] = _per_dataset(value, key, *PER_DATASET[kind])
        elif kind == "list[str]":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise LancyError(f"params key `{key}` must be a list of names, got {value!r}")
            values[name] = list(value)
        elif kind == "dict[str, object]":
            if not isinstance(value, dict) or not all(isinstance(v, (int, float, str, bool)) for v in value.values()):
                raise LancyError(f"params key `{key}` must map params keys to values, got {value!r}")
            values[name] = dict(value)
        else:
            values[name] = _scalar(value, kind, key)
    return cls(**values)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _scalar(value: Any, kind: str, key: str):
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        article = "an" if kind == "int" else "a"
        raise LancyError(f"params key `{key}` must be {article} {kind}, got {value!r}")
    return float(value) if kind == "float" else value


PER_DATASET = {"dict[str, float]": ("float", "weights"), "dict[str, str]": ("str", "text"),
               "dict[str, int]": ("int", "row counts")}  # a mapping's schema type -> its values' kind and noun


def _per_dataset(raw: Any, key: str, kind: str, noun: str) -> dict:
    """A mapping of dataset names to values of one kind (mixture weights, prompts, row counts); numbers >= 0."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LancyError(f"params key `{key}` must map dataset names to {noun}, got {raw!r}")
    values = {str(name): _scalar(value, kind, f"{key}.{name}") for name, value in raw.items()}
    for name, value in values.items():
        if kind != "str" and value < 0:
            raise LancyError(f"params key `{key}.{name}` is negative ({value}); {noun} must be >= 0")
    return values


def looks_like_path(name: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything else (a model name, a reward model) is meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def unknown_dataset(name: str, catalog: dict) -> str:
    """What to say about a name that is not in the catalog: the closest known names and where all of them are
    listed (the catalog has about 200, too many for one line)."""
    import difflib

    close = difflib.get_close_matches(name, catalog, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(f'`{c}`' for c in close)}? " if close else ""
    return f"{hint}all {len(catalog)} names: docs/datasets.md or `python -m lancy.catalog`"


def validate_datasets(params: Params, catalog: dict) -> None:
    """The checks of keys that name datasets, against the catalog (lancy.catalog.CATALOG)."""
    for key, names in (("mixture", params.mixture), ("corpus", params.corpus), ("data.local", params.data.local),
                       ("data.local_splits", params.data.local_splits), ("prompts", params.prompts),
                       ("data.dataset_test_rows", params.data.dataset_test_rows)):
        for name in names:
            if name not in catalog:
                raise LancyError(f"params key `{key}.{name}` names an unknown dataset; "
                                 f"{unknown_dataset(name, catalog)}")
    for name in params.prompts:
        if catalog[name].task == "corpus":
            raise LancyError(f"params key `prompts.{name}`: {name} is a text corpus and has no prompt")
    for name, weight in params.rl_mixture.items():
        if weight > 0 and catalog[name].task == "corpus":
            raise LancyError(f"params key `rl_mixture.{name}`: {name} is a text corpus with no task to reward")
    for name, weight in params.mixture.items():
        if weight > 0 and catalog[name].task == "corpus":
            raise LancyError(
                f"params key `mixture.{name}` is > 0 but {name} is a text corpus with no task; "
                f"give it weight 0 in mixture (it is still downloaded) and a weight in `corpus`"
            )


def validate(params: Params) -> None:
    """Cross-key checks that a single key's type cannot express (dataset names aside: validate_datasets)."""
    if params.num_proc < 0:
        raise LancyError("params key `num_proc` must be >= 0 (0: all the machine's cores)")
    if params.tokenize.tokenizer_sample_chars <= 0:
        raise LancyError("params key `tokenize.tokenizer_sample_chars` must be > 0")
    if params.search.model not in ("pretrain", "sft", "grpo"):
        raise LancyError(f"params key `search.model` must be pretrain, sft or grpo, got {params.search.model!r}")
    if params.search.metric not in SEARCH_METRICS:
        raise LancyError(f"params key `search.metric` must be {' or '.join(SEARCH_METRICS)}, "
                         f"got {params.search.metric!r}")
    if params.search.proxies < 4:
        raise LancyError("params key `search.proxies` must be >= 4: the fit needs at least four runs")
    if params.search.replicates < 0:
        raise LancyError("params key `search.replicates` must be >= 0 (2: three runs of a mixture, to measure noise)")

    if params.data.engine not in ENGINES:
        raise LancyError(f"params key `data.engine` is {params.data.engine!r}; use one of: {', '.join(ENGINES)}")
    if params.data.source not in DATA_SOURCES:
        raise LancyError(
            f"params key `data.source` is {params.data.source!r}; use one of: {', '.join(DATA_SOURCES)}"
        )
    for key in ("mixture", "corpus"):
        weights = getattr(params, key)
        if not weights or sum(weights.values()) <= 0:
            raise LancyError(f"params key `{key}` needs at least one dataset with a weight > 0")
    if params.data.source == "local":
        for name in params.mixture:
            if name not in params.data.local:
                raise LancyError(f"`data.source` is local but `data.local.{name}` is not set; give {name}'s folder")
    for name in params.rl_mixture:
        if name not in params.mixture:
            raise LancyError(
                f"params key `rl_mixture.{name}`: {name} is not in `mixture`, so it is not downloaded; "
                f"add `mixture.{name}: 0` (weight 0 keeps it out of SFT)"
            )
    if params.rl_mixture and sum(params.rl_mixture.values()) <= 0:
        raise LancyError("params key `rl_mixture` needs a dataset with a weight > 0, or no entries (then GRPO "
                         "prompts follow `mixture`)")
    for name in params.corpus:
        if name not in params.mixture:
            raise LancyError(
                f"params key `corpus.{name}`: {name} is not in `mixture`, so it is not downloaded; "
                f"add `mixture.{name}: 0` (weight 0 keeps it out of the SFT mixture)"
            )
    for section in ("pretrain", "sft", "grpo"):
        for key in ("max_steps", "batch_size", "gradient_accumulation_steps"):
            if getattr(getattr(params, section), key) <= 0 and key != "max_steps":
                raise LancyError(f"params key `{section}.{key}` must be > 0")
    if params.pretrain.max_steps < 0:
        raise LancyError("params key `pretrain.max_steps` must be >= 0 (0: no pretraining)")
    if params.grpo.max_steps < 0:
        raise LancyError("params key `grpo.max_steps` must be >= 0 (0: no GRPO, the SFT model passes through)")
    for section in ("sft",):
        if getattr(params, section).max_steps <= 0 and getattr(params, section).epochs <= 0:
            raise LancyError(f"params key `{section}.max_steps` must be > 0 (or set `{section}.epochs`)")
    for section in ("pretrain", "sft", "grpo"):
        if getattr(params, section).lr_scheduler not in SCHEDULERS:
            raise LancyError(f"params key `{section}.lr_scheduler` is {getattr(params, section).lr_scheduler!r}; "
                             f"use one of: {', '.join(SCHEDULERS)}")
    if params.model.attention not in ATTENTION:
        raise LancyError(
            f"params key `model.attention` is {params.model.attention!r}; use one of: {', '.join(ATTENTION)}"
        )
    name = params.model.name
    if name != "scratch" and looks_like_path(name) and not Path(name).expanduser().exists():
        raise LancyError(f"params key `model.name`: folder `{name}` does not exist; use scratch, a Hub id or a folder")
    reward_model = params.grpo.reward_model
    if reward_model and not (Path(reward_model) / "config.json").exists():
        raise LancyError(f"params key `grpo.reward_model`: `{reward_model}` is not a model folder (no config.json)")
    for section in ("sft", "grpo"):
        if getattr(params, section).lora.quantize not in ("none", "4bit", "8bit"):
            raise LancyError(f"params key `{section}.lora.quantize` must be none, 4bit or 8bit")
    if params.launch.processes < 1 or params.launch.machines < 1:
        raise LancyError("params keys `launch.processes` and `launch.machines` must be >= 1")
    if not 0 <= params.launch.machine_rank < params.launch.machines:
        raise LancyError("params key `launch.machine_rank` must be between 0 and `launch.machines` - 1")
    if params.grpo.num_generations < 2:
        raise LancyError("params key `grpo.num_generations` must be >= 2 (GRPO compares completions within a group)")
    if params.grpo.batch_size % params.grpo.num_generations:
        raise LancyError("params key `grpo.batch_size` must be a multiple of `grpo.num_generations`")
    if not 0 <= params.grpo.min_p < 1:
        raise LancyError("params key `grpo.min_p` must be in [0, 1) (0: no min-p sampling)")


def load_all(path: str | Path = "params.yaml", catalog: dict | None = None) -> Params:
    """All of params.yaml, validated; dataset names too when `catalog` is given."""
    path = Path(path)
    if not path.exists():
        raise LancyError(f"{path} not found; run the stage from the repository root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise LancyError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    params = _build(Params, raw, "")
    validate(params)
    if catalog is not None:
        validate_datasets(params, catalog)
    return params


def load(keys: tuple[str, ...] | list[str], path: str | Path = "params.yaml", catalog: dict | None = None
         ) -> SimpleNamespace:
    """Validate all of params.yaml, then return a view holding only `keys` (dotted, as in dvc.yaml).

    The stages that read datasets pass the catalog, and dataset names are checked against it; the others do
    not import the catalog, so that editing it (a label word) re-runs the stages it touches and no others.
    """
    params = load_all(path, catalog)
    view = SimpleNamespace()
    for key in keys:
        node, target = params, view
        parts = key.split(".")
        for part in parts[:-1]:
            node = getattr(node, part)
            if not hasattr(target, part):
                setattr(target, part, SimpleNamespace())
            target = getattr(target, part)
        setattr(target, parts[-1], getattr(node, parts[-1]))
    return view


def to_dict(obj: Any) -> Any:
    """A params view (or part of it) as plain dicts, for metrics and logs."""
    if isinstance(obj, SimpleNamespace):
        return {k: to_dict(v) for k, v in vars(obj).items()}
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return obj
