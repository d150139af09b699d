"""lancy.params: the repository's params.yaml loads, views hold only declared keys, bad params name their key."""
import copy
import re

import pytest
import yaml

from lancy import params as P
from lancy.catalog import CATALOG
from lancy.errors import LancyError


@pytest.fixture(scope="module")
def default_raw(repo_root):
    """The repository's params.yaml as plain data (each test modifies a deep copy)."""
    return yaml.safe_load((repo_root / "params.yaml").read_text())


@pytest.fixture
def write_params(tmp_path, default_raw):
    """write_params(edit) -> path of a params file: the default params with `edit(raw)` applied."""

    def write(edit):
        raw = copy.deepcopy(default_raw)
        edit(raw)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


def test_default_params_load(repo_root, default_raw):
    params = P.load_all(repo_root / "params.yaml")
    assert params.seed == default_raw["seed"]
    assert params.mixture == {name: float(w) for name, w in default_raw["mixture"].items()}
    assert params.corpus == {name: float(w) for name, w in default_raw["corpus"].items()}
    assert params.pretrain.max_steps == default_raw["pretrain"]["max_steps"]
    assert params.sft.lora.enabled is default_raw["sft"]["lora"]["enabled"]
    assert params.grpo.learning_rate == pytest.approx(default_raw["grpo"]["learning_rate"])
    assert isinstance(params.pretrain.learning_rate, float)


def test_unedited_copy_loads(write_params, default_raw):
    """The helper itself round-trips: an unmodified copy is valid (so failures below come from the edit)."""
    params = P.load_all(write_params(lambda raw: None))
    assert params.model.name == default_raw["model"]["name"]


def test_view_holds_only_declared_keys(repo_root, default_raw):
    view = P.load(("seed", "model.name", "pretrain"), repo_root / "params.yaml")
    assert view.seed == default_raw["seed"]
    assert view.model.name == default_raw["model"]["name"]
    assert view.pretrain.max_steps == default_raw["pretrain"]["max_steps"]
    assert set(vars(view)) == {"seed", "model", "pretrain"}
    assert set(vars(view.model)) == {"name"}
    with pytest.raises(AttributeError):
        view.sft  # noqa: B018 - undeclared section
    with pytest.raises(AttributeError):
        view.model.hidden_size  # noqa: B018 - undeclared key of a declared section
    with pytest.raises(AttributeError):
        view.tokenize  # noqa: B018


def test_to_dict_of_a_view(repo_root, default_raw):
    view = P.load(("seed", "model.name", "sft"), repo_root / "params.yaml")
    as_dict = P.to_dict(view)
    assert as_dict["seed"] == default_raw["seed"]
    assert as_dict["model"] == {"name": default_raw["model"]["name"]}
    assert as_dict["sft"]["lora"]["r"] == default_raw["sft"]["lora"]["r"]


def test_missing_file_is_a_lancy_error(tmp_path):
    with pytest.raises(LancyError, match="not found"):
        P.load_all(tmp_path / "nope.yaml")


def _set(path: str, value):
    """An edit that sets a dotted key."""

    def edit(raw):
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[last] = value

    return edit


def _zero_all_mixture(raw):
    raw["mixture"] = {name: 0 for name in raw["mixture"]}


def _drop_from_mixture(raw):
    del raw["mixture"]["wikitext"]  # still named in corpus


BAD_PARAMS = {
    "unknown top-level key": (_set("learning_rate", 0.1), "learning_rate"),
    "unknown nested key": (_set("pretrain.max_stepz", 10), "pretrain.max_stepz"),
    "unknown doubly nested key": (_set("sft.lora.rank", 8), "sft.lora.rank"),
    "wrong type (str for int)": (_set("pretrain.max_steps", "ten"), "pretrain.max_steps"),
    "wrong type (bool for int)": (_set("mix.sft_rows", True), "mix.sft_rows"),
    "section is not a mapping": (_set("grpo", 3), "grpo"),
    "unknown dataset in mixture": (_set("mixture.imbd", 0.5), "mixture.imbd"),
    "unknown dataset in corpus": (_set("corpus.wiki", 0.5), "corpus.wiki"),
    "negative weight": (_set("mixture.sst2", -0.1), "mixture.sst2"),
    "negative held-out rows": (_set("data.dataset_test_rows.sst2", -1), "data.dataset_test_rows.sst2"),
    "held-out rows not an int": (_set("data.dataset_test_rows.sst2", 1.5), "data.dataset_test_rows.sst2"),
    "held-out rows of an unknown dataset": (_set("data.dataset_test_rows.sst", 10), "data.dataset_test_rows.sst"),
    "prompt not text": (_set("prompts.imdb", 3), "prompts.imdb"),
    "all-zero weights": (_zero_all_mixture, "mixture"),
    "unknown data.source": (_set("data.source", "s3"), "data.source"),
    "corpus dataset trained on": (_set("mixture.wikitext", 0.2), "mixture.wikitext"),
    "corpus key not in mixture": (_drop_from_mixture, "corpus.wikitext"),
    "zero max_steps": (_set("sft.max_steps", 0), "sft.max_steps"),
    "grpo batch not a multiple of the group": (_set("grpo.batch_size", 10), "grpo.batch_size"),
    "grpo min_p of 1 or more": (_set("grpo.min_p", 1.0), "grpo.min_p"),
}


@pytest.mark.parametrize("case", BAD_PARAMS)
def test_bad_params_name_the_offending_key(case, write_params):
    edit, key = BAD_PARAMS[case]
    path = write_params(edit)
    with pytest.raises(LancyError) as caught:
        P.load(("seed",), path, catalog=CATALOG)  # the whole file is validated, whatever the view
    # The key appears as a whole key (`pretrain.max_stepz`), not merely as part of a longer one.
    assert re.search(rf"`{re.escape(key)}`", str(caught.value)), str(caught.value)


@pytest.mark.parametrize("key", ["mixture.imbd", "prompts.imbd"])
def test_unknown_dataset_suggests_the_closest_names_not_all(key, write_params):
    with pytest.raises(LancyError) as caught:
        P.load_all(write_params(_set(key, 0.5 if key.startswith("mixture") else "{text}")), CATALOG)
    message = str(caught.value)
    assert f"`{key}` names an unknown dataset; did you mean `imdb`?" in message
    assert "`python -m lancy.catalog`" in message and "docs/datasets.md" in message
    assert "mmlu_anatomy" not in message and len(message) < 200  # not the ~150 known names


def test_unknown_dataset_without_a_close_name_still_says_where_the_names_are():
    where = "docs/datasets.md or `python -m lancy.catalog`"
    assert P.unknown_dataset("zzz", CATALOG) == f"all {len(CATALOG)} names: {where}"
    assert P.unknown_dataset("financial_qa", CATALOG).startswith("did you mean `financial_qa_10k`")


def test_download_of_an_unknown_dataset_suggests_the_closest_name(repo_root, monkeypatch):
    import stages.download

    monkeypatch.chdir(repo_root)
    monkeypatch.setattr("sys.argv", ["download", "gsm8"])
    with pytest.raises(LancyError, match="^unknown dataset `gsm8`; did you mean `gsm8k`\\? all .* lancy.catalog`$"):
        stages.download.main()


def test_catalog_listing_names_every_dataset(repo_root):
    import subprocess
    import sys


    listing = subprocess.run([sys.executable, "-m", "lancy.catalog"], cwd=repo_root, capture_output=True, text=True,
                             check=True)
    rows = [line.split("\t") for line in listing.stdout.splitlines()]
    assert [row[0] for row in rows] == list(CATALOG)
    assert ["financial_qa_10k", "virattt/financial-qa-10K", "qa"] in rows


def test_weights_only_need_ratios(write_params):
    """A single weight changed (`-S mixture.imdb=0.7`) is valid: weights need not sum to 1."""
    params = P.load_all(write_params(_set("mixture.imdb", 0.7)))
    assert params.mixture["imdb"] == 0.7


def test_int_given_for_float_becomes_float(write_params):
    params = P.load_all(write_params(_set("pretrain.learning_rate", 1)))
    assert params.pretrain.learning_rate == 1.0
    assert isinstance(params.pretrain.learning_rate, float)


def test_zero_num_generations_names_the_key(write_params):
    with pytest.raises(LancyError, match="`grpo.num_generations`"):
        P.load_all(write_params(_set("grpo.num_generations", 0)))


# --- the training sections reach the trainer ------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_arguments():
    from lancy.training import training_arguments

    return training_arguments


@pytest.mark.parametrize("section", ["pretrain", "sft", "grpo"])
def test_training_section_reaches_the_trainer_arguments(section, repo_root, training_arguments, tmp_path):
    values = getattr(P.load_all(repo_root / "params.yaml"), section)
    args = training_arguments(values, tmp_path, seed=5)
    assert args["max_steps"] == values.max_steps
    assert args["per_device_train_batch_size"] == values.batch_size
    assert args["learning_rate"] == values.learning_rate
    assert args["warmup_steps"] == values.warmup_ratio  # a float < 1: a fraction of max_steps
    assert args["logging_steps"] == values.logging_steps
    assert args["seed"] == 5


@pytest.mark.parametrize("section", ["pretrain", "sft"])
def test_weight_decay_reaches_the_trainer_arguments(section, repo_root, training_arguments, tmp_path):
    import dataclasses

    values = dataclasses.replace(getattr(P.load_all(repo_root / "params.yaml"), section), weight_decay=0.125)
    assert training_arguments(values, tmp_path, seed=0).get("weight_decay") == 0.125


@pytest.mark.parametrize("section", ["pretrain", "sft", "grpo"])
def test_training_options_reach_the_trainer_arguments(section, repo_root, training_arguments, tmp_path):
    import dataclasses

    from transformers import TrainingArguments

    values = dataclasses.replace(getattr(P.load_all(repo_root / "params.yaml"), section), max_steps=40,
                                 gradient_accumulation_steps=4, lr_scheduler="linear", save_steps=0,
                                 save_total_limit=3, logging_steps=0)
    args = training_arguments(values, tmp_path, seed=0)
    assert args["gradient_accumulation_steps"] == 4 and args["lr_scheduler_type"] == "linear"
    assert args["save_steps"] == 10 and args["logging_steps"] == 10  # 0: every quarter of max_steps
    assert args["save_total_limit"] == 3
    TrainingArguments(**args)  # transformers accepts them as they are


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_checkpointing_is_lancys_choice_in_grpo(checkpointing, repo_root, training_arguments, tmp_path):
    """TRL's GRPOConfig turns activation checkpointing on by default; `grpo.activation_checkpointing` decides."""
    import dataclasses

    from trl import GRPOConfig

    values = dataclasses.replace(P.load_all(repo_root / "params.yaml").grpo, activation_checkpointing=checkpointing)
    config = GRPOConfig(**training_arguments(values, tmp_path, seed=0))
    assert config.activation_checkpointing is checkpointing and config.gradient_checkpointing is checkpointing


@pytest.mark.parametrize("key, value, message", [
    ("model.attention", "flash", "`model.attention`"),
    ("sft.lr_scheduler", "cosinus", "`sft.lr_scheduler`"),
    ("grpo.gradient_accumulation_steps", 0, "`grpo.gradient_accumulation_steps`"),
    ("pretrain.batch_size", 0, "`pretrain.batch_size`"),
])
def test_training_option_errors_name_the_key(write_params, key, value, message):
    with pytest.raises(LancyError, match=message):
        P.load_all(write_params(_set(key, value)))


def test_epochs_replace_max_steps(repo_root, training_arguments, tmp_path):
    import dataclasses

    values = dataclasses.replace(P.load_all(repo_root / "params.yaml").sft, epochs=2.0)
    args = training_arguments(values, tmp_path, seed=0)
    assert args["max_steps"] == -1 and args["num_train_epochs"] == 2.0 and args["save_strategy"] == "epoch"


def test_dataset_names_are_checked_only_with_the_catalog(write_params):
    """Stages that read no dataset key load params without the catalog (so a catalog edit does not re-run them);
    the stages that do (download, mix, evaluate) pass it and get the check."""
    path = write_params(_set("mixture.imbd", 0.5))
    assert P.load(("seed",), path).seed == 42
    with pytest.raises(LancyError, match="mixture.imbd"):
        P.load(("seed",), path, catalog=CATALOG)
