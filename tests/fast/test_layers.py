"""The package's folders in floors: every import, at the top of a module or inside a function, goes to the module's
own folder or a floor below it, and no two modules import each other (docs/model.md's folder map)."""

import ast
import collections
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hf_posattn"
# Floor by folder (or top-level module), from the top: each may import its own folder and the floors below.
# The package's door (__init__: it registers the model, and names the public API, imported when first used) sits
# below the command line, which reads its version.
FLOORS = {"__main__": 0, "cli": 1, "__init__": 2, "study": 3, "lesson": 3, "training": 4, "sharing": 5, "figures": 6,
          "data": 7, "runfolder": 8, "cli_types": 9, "files": 9, "common": 9, "arguments": 10, "model": 11}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py") if "model_cards" not in path.parts}


def imports(module: str) -> set[str]:
    """The package's modules that `module` imports, wherever in the file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {f"{target}.{alias.name}" for alias in node.names} if not node.module else {target}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hf_posattn"):
            found.add(node.module)
    resolved = set()
    for target in found:
        while target not in MODULES and "." in target:
            target = target.rsplit(".", 1)[0]
        if target != module and target in MODULES:
            resolved.add(target)
    return resolved


def folder(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


EDGES = {(module, target) for module in MODULES for target in imports(module)}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down(module):
    up = [target for target in imports(module) if folder(target) != folder(module)
          and FLOORS[folder(target)] <= FLOORS[folder(module)]]
    assert not up, f"{module} imports {up}, on its floor or above it"


def test_no_two_modules_import_each_other():
    mutual = sorted({tuple(sorted(edge)) for edge in EDGES if edge[::-1] in EDGES})
    assert not mutual


def test_every_folder_has_a_floor():
    assert {folder(module) for module in MODULES} <= set(FLOORS)
