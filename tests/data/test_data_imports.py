"""Import rules of fx_d2/data, read from the source (every import, lazy ones included): no import
cycle, demo writers independent of the loaders, loaders importing only the toolkit of sources/."""

import ast
import os
from typing import Dict, Set

import fx_d2.data

DATA_DIR = os.path.dirname(fx_d2.data.__file__)
TOOLKIT = {"__init__", "base", "headers", "labeler", "paths", "records", "tables"}


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(os.path.dirname(DATA_DIR)))
    parts = rel[: -len(".py")].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> Dict[str, Set[str]]:
    """Module -> the fx_d2.data modules it imports."""
    files = {}
    for folder, _, names in os.walk(DATA_DIR):
        files.update({_module_name(os.path.join(folder, n)): os.path.join(folder, n)
                      for n in names if n.endswith(".py")})  # fmt: skip
    graph = {}
    for module, path in files.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                               for a in node.names)  # fmt: skip
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def test_no_import_cycle():
    graph, done, stack = _graph(), set(), []

    def visit(module):
        if module in stack:
            raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(module):])}")
        if module in done:
            return
        stack.append(module)
        for target in sorted(graph[module]):
            visit(target)
        stack.pop()
        done.add(module)

    assert "fx_d2.data.io" in graph and "fx_d2.data.dicom" in graph["fx_d2.data.io"]
    for module in sorted(graph):
        visit(module)


def test_demo_writers_do_not_import_loaders():
    for module, targets in _graph().items():
        if module.startswith("fx_d2.data.demo"):
            assert not {t for t in targets if t.startswith("fx_d2.data.sources")}, module


def test_loaders_import_only_the_toolkit():
    prefix = "fx_d2.data.sources."
    for module, targets in _graph().items():
        if module.startswith(prefix) and module[len(prefix) :] not in TOOLKIT:
            siblings = {t[len(prefix) :] for t in targets if t.startswith(prefix)}
            assert siblings <= TOOLKIT, f"{module} imports {siblings - TOOLKIT}"
