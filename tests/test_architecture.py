"""The package's structure holds: no import cycle, layers import only downward, files stay small,
and every document a module cites is in the repository."""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "fx_d2")
# subpackage -> fx_d2 subpackages it must not import (docs/architecture.md)
FORBIDDEN = {
    "utils": ("engine", "checkpoint", "inference", "testing"),
    "data": ("modeling", "evaluation", "engine", "checkpoint", "inference", "testing"),
    "modeling": ("evaluation", "engine", "checkpoint", "inference", "testing"),
    "evaluation": ("modeling", "engine", "checkpoint", "inference", "testing"),
    "checkpoint": ("evaluation", "engine", "inference", "testing"),
    "inference": ("engine", "testing"),
    "engine": ("testing",),
}
CITATION = re.compile(r"\b([\w./-]+\.md)\b")


def _modules():
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path[:-3], ROOT).replace(os.sep, ".")
                found[module[: -len(".__init__")] if module.endswith(".__init__") else module] = (
                    path
                )
    return found


def _imports(module, path, modules):
    """fx_d2 modules imported anywhere in ``path`` (function-level imports included)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            while name and name not in modules and "." in name:
                name = name.rpartition(".")[0]
            if name in modules and name != module:
                targets.add(name)
    return targets


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_no_import_cycle(graph):
    # A package's __init__ re-exporting its own modules is not a cycle of the code.
    edges = {
        m: {t for t in deps if not (m.endswith(t) or t.startswith(m + "."))}
        for m, deps in graph.items()
    }
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_layers_import_only_downward(graph):
    bad = []
    for module, deps in graph.items():
        layer = module.split(".")[1] if module.count(".") else ""
        for dep in deps:
            target = dep.split(".")[1] if dep.count(".") else ""
            if target in FORBIDDEN.get(layer, ()):
                bad.append(f"{module} -> {dep}")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(sorted(bad))


def test_safe_checkpoint_loading_is_a_leaf(graph):
    # every loading path goes through it; it must not pull in (and run) anything else of fx_d2
    assert graph["fx_d2.checkpoint.loading"] == set()
    assert graph["fx_d2.checkpoint"] == {"fx_d2.checkpoint.loading"}


def test_files_stay_small():
    sizes = {m: sum(1 for _ in open(p)) for m, p in _modules().items()}
    assert sizes["fx_d2.modeling.meta_arch.foundation_x"] < 300
    large = {m: n for m, n in sizes.items() if n > 400}
    assert not large, f"modules over 400 lines: {large}"


def test_cited_documents_exist():
    missing = []
    for module, path in _modules().items():
        for line_no, line in enumerate(open(path), 1):
            for cited in CITATION.findall(line):
                candidates = [os.path.join(ROOT, cited), os.path.join(ROOT, "docs", cited)]
                if not cited.startswith(("docs/", "datasets/")) or not any(
                    os.path.isfile(c) for c in candidates
                ):
                    missing.append(f"{path}:{line_no}: {cited}")
    assert not missing, "cited documents not in the repository:\n" + "\n".join(missing)
