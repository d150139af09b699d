"""dvc.yaml against the stage scripts: each stage declares exactly the params its script reads, and its files.

A stage that reads an undeclared param would not be re-run by `dvc repro` when that param changes; one that
declares a param it does not read is re-run for nothing. The script's PARAMS is what it loads (lancy.params.load
gives a view holding only those keys), so dvc.yaml `params:` must equal PARAMS, and the script's source must not
reach past PARAMS.
"""
import ast
import importlib

import pytest
import yaml

STAGES = ("download", "mix", "tokenize", "pretrain", "sft", "grpo", "evaluate")
FOREACH = ("download", "evaluate")


@pytest.fixture(scope="module")
def dvc(repo_root):
    return yaml.safe_load((repo_root / "dvc.yaml").read_text())


@pytest.fixture(scope="module")
def params_yaml(repo_root):
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def _body(stage: dict) -> dict:
    """The stage definition: under `do:` for a foreach stage."""
    return stage["do"] if "foreach" in stage else stage


def _instances(name: str, stage: dict, params_yaml: dict) -> list[dict]:
    """The stage's definitions with foreach variables (${item}, ${key}) filled in, as DVC expands them."""
    if "foreach" not in stage:
        return [stage]
    items = stage["foreach"]
    if isinstance(items, str):  # "${mixture}": a params.yaml dict
        assert items.startswith("${") and items.endswith("}"), items
        items = params_yaml[items[2:-1]]
    pairs = items.items() if isinstance(items, dict) else ((item, item) for item in items)
    text = yaml.safe_dump(stage["do"])
    return [
        yaml.safe_load(text.replace("${key}", str(key)).replace("${item}", str(value))) for key, value in pairs
    ]


def _out_paths(body: dict) -> list[str]:
    return [next(iter(out)) if isinstance(out, dict) else out for out in body.get("outs", [])]


def _stage_params(stage: dict) -> list[str]:
    params = _body(stage).get("params", [])
    assert all(isinstance(key, str) for key in params), "params from other files are not expected here"
    return params


def _script(repo_root, name: str) -> ast.Module:
    path = repo_root / "stages" / f"{name}.py"
    return ast.parse(path.read_text(), filename=str(path))


def _param_chains(tree: ast.Module, root: str = "p") -> set[tuple[str, ...]]:
    """Every attribute chain read from the params view `p`, e.g. ("pretrain", "max_steps").

    A local alias counts as its source: after `g = p.grpo`, `g.beta` is ("grpo", "beta").
    """
    aliases = {root: ()}

    def chain(node):
        attrs = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in aliases:
            return aliases[node.id] + tuple(reversed(attrs))
        return None

    changed = True
    while changed:  # aliases of aliases, in any order
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target, source = node.targets[0].id, chain(node.value)
                if source is not None and target not in aliases:
                    aliases[target] = source
                    changed = True

    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:  # the outermost attribute of a chain
            found = chain(node)
            if found:
                chains.add(found)
    return chains


def _covered(chain: tuple[str, ...], declared: set[tuple[str, ...]]) -> bool:
    """A declared key covers itself and everything under it. A bare section whose keys are declared one by one
    (`p.model` handed to a function, with model.hidden_size declared) is the partial view: reading an undeclared
    key of it raises AttributeError at run time, never silently."""
    return any(chain[: len(key)] == key or key[: len(chain)] == chain for key in declared)


def _load_calls(tree: ast.Module) -> list[ast.Call]:
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "load"
    ]


# --- the checker itself -----------------------------------------------------------------------------------------


def test_param_chains_finds_reads_and_aliases():
    tree = ast.parse(
        "p = P.load(PARAMS)\n"
        "g = p.grpo\n"
        "h = g\n"
        "x = p.model.name.startswith('s') and p.mixture[name] and h.beta\n"
        "f(p.pretrain, g.lora.r, P.to_dict(p), other.sft.max_steps)\n"
    )
    assert _param_chains(tree) == {
        ("grpo",), ("model", "name", "startswith"), ("mixture",), ("grpo", "beta"), ("pretrain",),
        ("grpo", "lora", "r"),
    }


def test_covered():
    declared = {("seed",), ("model", "name"), ("sft",)}
    assert _covered(("model", "name"), declared)
    assert _covered(("sft", "lora", "enabled"), declared)
    assert _covered(("model",), declared)  # the partial view
    assert not _covered(("model", "vocab_size"), declared)
    assert not _covered(("grpo", "beta"), declared)


# --- dvc.yaml <-> stage scripts ---------------------------------------------------------------------------------


def test_stage_names(dvc):
    assert tuple(dvc["stages"]) == STAGES
    for name in FOREACH:
        assert "foreach" in dvc["stages"][name] and "do" in dvc["stages"][name]


@pytest.mark.parametrize("name", STAGES)
def test_stage_params_equal_script_params(name, dvc):
    module = importlib.import_module(f"stages.{name}")
    declared = _stage_params(dvc["stages"][name])
    assert len(declared) == len(set(declared)), f"{name}: a param listed twice"
    launched = "lancy.launch" in _body(dvc["stages"][name])["cmd"]
    launcher = importlib.import_module("lancy.launch").PARAMS if launched else ()
    assert set(declared) == set(module.PARAMS) | set(launcher)


@pytest.mark.parametrize("name", STAGES)
def test_script_params_exist_in_params_yaml(name, params_yaml):
    module = importlib.import_module(f"stages.{name}")
    for key in module.PARAMS:
        node = params_yaml
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"stages/{name}.py PARAMS has `{key}`: not in params.yaml"
            node = node[part]


@pytest.mark.parametrize("name", STAGES)
def test_script_loads_exactly_its_params(name, repo_root):
    calls = _load_calls(_script(repo_root, name))
    assert len(calls) == 1, f"stages/{name}.py should load params once"
    assert [ast.unparse(arg) for arg in calls[0].args] == ["PARAMS"]
    assert [ast.unparse(k) for k in calls[0].keywords] in ([], ["catalog=CATALOG"])


@pytest.mark.parametrize("name", STAGES)
def test_script_reads_only_declared_params(name, repo_root):
    module = importlib.import_module(f"stages.{name}")
    declared = {tuple(key.split(".")) for key in module.PARAMS}
    chains = _param_chains(_script(repo_root, name))
    assert chains, f"stages/{name}.py reads no params through `p`"
    undeclared = sorted(".".join(chain) for chain in chains if not _covered(chain, declared))
    assert not undeclared, f"stages/{name}.py reads params outside its PARAMS: {undeclared}"


@pytest.mark.parametrize("name", STAGES)
def test_script_uses_every_declared_section(name, repo_root):
    """No declared section goes unread (a dead declaration makes DVC re-run the stage for nothing)."""
    module = importlib.import_module(f"stages.{name}")
    chains = _param_chains(_script(repo_root, name))
    for key in module.PARAMS:
        parts = tuple(key.split("."))
        assert any(chain[: len(parts)] == parts or parts[: len(chain)] == chain for chain in chains), (
            f"stages/{name}.py declares `{key}` but never reads it"
        )


# --- deps, outs, metrics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STAGES)
def test_stage_depends_on_its_script(name, dvc):
    assert f"stages/{name}.py" in _body(dvc["stages"][name])["deps"]


@pytest.mark.parametrize("name", STAGES)
def test_code_deps_exist(name, dvc, repo_root):
    for dep in _body(dvc["stages"][name])["deps"]:
        if dep.startswith(("stages/", "lancy/")):
            assert (repo_root / dep).is_file(), f"{name} depends on missing {dep}"


@pytest.mark.parametrize("name", STAGES)
def test_stage_command_runs_its_script(name, dvc):
    cmd = _body(dvc["stages"][name])["cmd"]
    assert cmd.startswith((f"python -m stages.{name}", f"python -m lancy.launch stages.{name}"))


@pytest.mark.parametrize("name", ["mix", "tokenize"])
def test_data_stage_outs_stay_in_data_and_metrics(name, dvc):
    outs = _out_paths(dvc["stages"][name])
    assert outs
    for out in outs:
        assert out.startswith(("data/", "metrics/")), f"{name} writes {out}"


def test_download_iterates_over_the_mixture(dvc):
    download = dvc["stages"]["download"]
    assert download["foreach"] == "${mixture}"
    assert "${key}" in download["do"]["cmd"]
    assert _out_paths(download["do"]) == ["data/raw/${key}"]


def test_foreach_expands_to_one_instance_per_item(dvc, params_yaml):
    downloads = _instances("download", dvc["stages"]["download"], params_yaml)
    assert [d["cmd"] for d in downloads] == [f"python -m stages.download {n}" for n in params_yaml["mixture"]]
    evaluations = _instances("evaluate", dvc["stages"]["evaluate"], params_yaml)
    assert [_out_paths(e) for e in evaluations] == [
        [f"data/results/{m}", *(f"metrics/eval/{m}{suffix}.json" for suffix in ("_details", "", "_scores"))]
        for m in ("pretrain", "sft", "grpo")]


def test_top_level_metrics_are_stage_outs(dvc, params_yaml):
    outs = [
        out
        for name, stage in dvc["stages"].items()
        for instance in _instances(name, stage, params_yaml)
        for out in _out_paths(instance)
    ]
    assert dvc["metrics"]
    for metric in dvc["metrics"]:
        assert any(metric == out or metric.startswith(out.rstrip("/") + "/") for out in outs), (
            f"metric {metric} is not written by any stage"
        )


def test_every_output_is_cached_so_the_run_cache_works(dvc, params_yaml):
    """DVC saves a run to its run cache only when every output is cached (dvc/stage/__init__.py: `no_cache_outs`);
    one `cache: false` output, a persisted one or an always-changed stage would make going back to parameters
    already run re-run the stage instead of restoring it."""
    for name, stage in dvc["stages"].items():
        assert not stage.get("always_changed") and not stage.get("do", {}).get("always_changed"), name
        for instance in _instances(name, stage, params_yaml):
            for out in instance.get("outs", []):
                if isinstance(out, dict):
                    path, options = next(iter(out.items()))
                    assert options.get("cache", True) and not options.get("persist"), f"{name}: {path}"


def test_plots_read_stage_outputs(dvc, params_yaml):
    """Every file a top-level plot draws is written by a stage, so `dvc plots diff` finds it in each experiment."""
    outs = [out for name, stage in dvc["stages"].items() for instance in _instances(name, stage, params_yaml)
            for out in _out_paths(instance)]
    for plot in dvc["plots"]:
        (name, spec), = plot.items()
        for path in spec["y"]:
            assert any(path == out or path.startswith(out.rstrip("/") + "/") for out in outs), f"{name}: {path}"


# --- code deps: every lancy module a stage imports, transitively ---------------------------------------------


def _imported_lancy_modules(path) -> set[str]:
    """The lancy modules a file imports anywhere (top level or inside a function: both run), as dotted names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("lancy.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "lancy":  # from lancy import params
                found |= {f"lancy.{alias.name}" for alias in node.names}
            elif node.module.startswith("lancy."):
                found.add(node.module)
    return found


def import_closure(repo_root, module: str) -> set[str]:
    """Files of the lancy modules `module` (e.g. stages.mix) reaches through imports, lancy/__init__.py aside."""
    seen, todo = set(), [module]
    while todo:
        path = repo_root / (todo.pop().replace(".", "/") + ".py")
        for name in _imported_lancy_modules(path):
            file = name.replace(".", "/") + ".py"
            if file not in seen:
                seen.add(file)
                todo.append(name)
    return seen


def test_import_closure_follows_imports_inside_functions(tmp_path):
    (tmp_path / "lancy").mkdir()
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "s.py").write_text("from lancy import a\nimport lancy.b as b\n")
    (tmp_path / "lancy" / "a.py").write_text("def f():\n    from lancy.c import x\n")
    (tmp_path / "lancy" / "b.py").write_text("import os\n")
    (tmp_path / "lancy" / "c.py").write_text("from lancy.a import f\nx = 1\n")
    assert import_closure(tmp_path, "stages.s") == {"lancy/a.py", "lancy/b.py", "lancy/c.py"}


@pytest.mark.parametrize("name", STAGES)
def test_code_deps_are_the_import_closure(name, dvc, repo_root):
    """A stage re-runs when any library module it runs changes, and only then: its lancy/ deps in dvc.yaml are
    exactly the modules its script (and lancy.launch, for launched stages) imports, transitively."""
    body = _body(dvc["stages"][name])
    # Importing any lancy module runs lancy/__init__.py first: what it imports runs in every stage.
    closure = import_closure(repo_root, f"stages.{name}") | import_closure(repo_root, "lancy.__init__")
    if "lancy.launch" in body["cmd"]:
        closure |= {"lancy/launch.py"} | import_closure(repo_root, "lancy.launch")
    declared = {dep for dep in body["deps"] if dep.startswith("lancy/")}
    assert not closure - declared, f"dvc.yaml stage {name} misses deps it imports: {sorted(closure - declared)}"
    assert not declared - closure, f"dvc.yaml stage {name} lists deps it never imports: {sorted(declared - closure)}"
