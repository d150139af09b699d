"""The documentation stays true to the tree: links resolve, the parameter reference lists exactly the schema's
keys, and the README stays a short guide. Reads files only (no network, no imports beyond lancy.params)."""
import dataclasses
import re
from pathlib import Path

import pytest

from lancy import params as P

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 400

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
KEY_ROW = re.compile(r"^\|\s*`([A-Za-z_][\w.]*)`\s*\|")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, markup and punctuation dropped (but '-' and '_'), spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    return [a or b for line in prose(path.read_text()) for a, b in LINK.findall(re.sub(r"`[^`]*`", "", line))]


def schema_keys(cls=P.Params, prefix: str = "") -> set[str]:
    """Every dotted params key of the schema; a dict- or list-valued key (`mixture`, `data.local`) is one key."""
    keys = set()
    for f in dataclasses.fields(cls):
        kind = getattr(P, f.type if isinstance(f.type, str) else f.type.__name__, None)
        if dataclasses.is_dataclass(kind):
            keys |= schema_keys(kind, f"{prefix}{f.name}.")
        else:
            keys.add(prefix + f.name)
    return keys


def documented_keys() -> list[str]:
    """The keys of the parameter reference's table rows (the first cell, one backticked key)."""
    return [m.group(1) for line in prose((ROOT / "docs/parameters.md").read_text()) if (m := KEY_ROW.match(line))]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(path):
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not checked (no network)
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT) if ROOT in linked.parents else linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_slug_follows_github():
    assert slug("The experiment loop") == "the-experiment-loop"
    assert slug("GPU: precision, attention, kernels") == "gpu-precision-attention-kernels"
    assert slug("What `mixture.imdb=0.7` changes") == "what-mixtureimdb07-changes"
    assert slug("Beyond one machine: the data_stages") == "beyond-one-machine-the-data_stages"
    assert slug("The same weights on every x86-64 machine with AVX2") == (
        "the-same-weights-on-every-x86-64-machine-with-avx2")


def test_parameter_reference_lists_exactly_the_schema_keys():
    documented = documented_keys()
    repeated = sorted({key for key in documented if documented.count(key) > 1})
    assert not repeated, f"docs/parameters.md documents these keys twice: {repeated}"
    schema = schema_keys()
    missing, unknown = sorted(schema - set(documented)), sorted(set(documented) - schema)
    assert not missing, f"params keys missing from docs/parameters.md (add a table row each): {missing}"
    assert not unknown, f"docs/parameters.md documents keys the schema does not have: {unknown}"


def test_schema_keys_are_dotted_leaves():
    keys = schema_keys()
    assert {"seed", "mixture", "data.local", "sft.lora.r", "grpo.code_execution", "search.proxy"} <= keys
    assert "sft.lora" not in keys and "data" not in keys


def test_readme_is_short():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, over {README_MAX_LINES}: move detail to docs/"
