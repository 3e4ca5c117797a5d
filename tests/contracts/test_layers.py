"""The layers hold, read from the source's import graph: each subpackage imports only from
those below it (no circle, no upward import), the core's messages name no flag, and the
bundled plugins and the example import no private name and reach the CLI through the
public toolkit only, the door docs/plugins.md gives a third party."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "charseq"
pytestmark = pytest.mark.skipif(not (ROOT / "plugins").is_dir(), reason="needs the source checkout")

# Lowest first; a unit may import from its own layer's units only when it is itself (a
# sibling is no dependency), and from every layer below. docs/architecture.md draws it.
LAYERS = [
    ["charseq.version", "charseq.errors", "charseq.installation"],
    ["charseq.files", "charseq.blas", "charseq.schema"],
    ["charseq.trust"],
    ["charseq.hooks"],
    ["charseq.data", "charseq.models"],
    ["charseq.runs"],
    ["charseq.checkpoints"],
    ["charseq.decoding"],
    ["charseq.training"],
    ["charseq.serving", "charseq.export", "charseq.sweeps"],
    ["charseq.cli"],
    ["charseq", "charseq.console", "charseq.__main__"],  # the package's face: lazy names, the entry point
]
UNITS = sorted((unit for layer in LAYERS for unit in layer), key=len, reverse=True)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    return next(u for u in UNITS if u != "charseq" and (module == u or module.startswith(u + "."))) \
        if any(module == u or module.startswith(u + ".") for u in UNITS if u != "charseq") else "charseq"


def level(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def imports(path: Path, include_type_checking: bool = False) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of a charseq module in `path`, function-local ones too."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    if not include_type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped.update(id(sub) for sub in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "charseq":
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "charseq"]
    return found


def core_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def targets(module: str, names: list[str]) -> list[str]:
    """What an import reaches: `from charseq import errors` reaches charseq.errors."""
    known = {module_name(p) for p in core_files()}
    if module == "charseq":
        return [f"charseq.{n}" if f"charseq.{n}" in known else "charseq" for n in names] or ["charseq"]
    return [module]


def test_every_module_belongs_to_a_layer():
    strays = [module_name(p) for p in core_files() if unit_of(module_name(p)) == "charseq"
              and module_name(p) not in ("charseq",)]
    assert not strays


def test_no_import_runs_up_or_sideways_between_layers():
    """The package's face (charseq/__init__) names what lives below it; everything else
    imports only from below, function-local imports included."""
    wrong = []
    for path in core_files():
        me = module_name(path)
        mine = unit_of(me)
        if level(mine) == len(LAYERS) - 1:
            continue
        for line, module, names in imports(path):
            for target in targets(module, names):
                theirs = unit_of(target)
                if theirs != mine and level(theirs) >= level(mine):
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {me} ({mine}) imports {target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circle_between_modules():
    graph: dict[str, set[str]] = defaultdict(set)
    for path in core_files():
        me = module_name(path)
        tree = ast.parse(path.read_text())
        top_level = {id(n) for n in tree.body}
        for node in tree.body:  # what runs on import: module-level imports only
            if isinstance(node, ast.ImportFrom) and id(node) in top_level and node.module \
                    and node.module.startswith("charseq") and node.module != me:
                graph[me].update(t for t in targets(node.module, [a.name for a in node.names]) if t != me)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not [c for c in cycles if "charseq" not in c], cycles


def test_no_module_imports_a_private_name_of_another():
    wrong = []
    for path in [*core_files(), *(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]:
        for line, module, names in imports(path, include_type_checking=True):
            private = [n for n in [*module.split("."), *names] if n.startswith("_") and not n.startswith("__")]
            if private:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {module} {private}")
    assert not wrong, "\n".join(wrong)


def test_plugins_and_the_example_reach_the_cli_through_its_toolkit_only():
    """`from charseq.cli import say`, never `from charseq.cli.train import ...`."""
    wrong = [f"{path.relative_to(ROOT)}:{line}: {module}"
             for path in [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
             for line, module, _ in imports(path) if module.startswith("charseq.cli.")]
    assert not wrong, "\n".join(wrong)


FLAG = re.compile(r"charseq (train|generate|eval|sweep|serve|export)\b|(?<![\w-])--[a-z][a-z-]+")


def test_no_core_message_names_a_flag():
    """The core speaks the API's words (`force=True`, `Run.resume(path)`); charseq.cli.words
    renders them with flags. Docstrings may mention flags; messages may not."""
    wrong = []
    for path in core_files():
        if unit_of(module_name(path)) in ("charseq.cli", "charseq", "charseq.console", "charseq.__main__"):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found = FLAG.search(node.value)
                if found:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {found.group()!r}")
    assert not wrong, "\n".join(wrong)


def test_the_packages_listed_for_the_wheel_are_the_packages_in_the_tree():
    """A subpackage left out of pyproject.toml would be missing from the wheel."""
    listed = set(re.search(r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M)
                 .group(1).replace('"', "").replace("\n", "").replace(" ", "").split(","))
    in_tree = {module_name(p.parent) for p in PACKAGE.rglob("__init__.py")} | {"charseq.plugins", "charseq.corpora"}
    assert listed - {""} == in_tree
