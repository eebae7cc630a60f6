"""The import graph: packages depend one way, no cycle, and the library never imports inside a function."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "segmentation", "translation", "transfer", "experiments")
#: what each package may import (besides itself)
ALLOWED = {"runtime": set(), "segmentation": {"runtime"}, "translation": {"runtime"},
           "transfer": {"runtime", "segmentation", "translation"},
           "experiments": {"runtime", "segmentation", "translation", "transfer"}}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str):
    """(imported module, line, inside a function?) for every project import of a file."""
    tree = ast.parse(path.read_text(), str(path))
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield name, node.lineno, id(node) in inside


def _graph():
    modules = _modules()
    edges = defaultdict(set)
    nested = []
    for module, path in modules.items():
        for name, line, in_function in _imports(path, module):
            target = name if name in modules else name.rsplit(".", 1)[0]
            if target in modules and target != module:
                if in_function:
                    nested.append((module, target, line))
                else:
                    edges[module].add(target)
    return modules, edges, nested


def test_packages_import_one_way():
    modules, edges, nested = _graph()
    bad = [f"{a} -> {b}" for a, targets in edges.items() for b in targets
           if b.split(".")[0] != a.split(".")[0] and b.split(".")[0] not in ALLOWED[a.split(".")[0]]]
    bad += [f"{a} -> {b} (in a function, line {line})" for a, b, line in nested
            if b.split(".")[0] != a.split(".")[0] and b.split(".")[0] not in ALLOWED[a.split(".")[0]]]
    assert not bad, bad


def test_no_import_cycle_between_modules():
    modules, edges, _ = _graph()
    # a package's __init__ re-exporting its modules is not a cycle of the code: drop edges into __init__ modules
    # from their own submodules only when the __init__ imports them (the usual re-export)
    state, stack, cycles = {}, [], []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodules (re-exports)
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module)
    cycles = [c for c in cycles if not all(c[i + 1].startswith(c[i] + ".") or c[i].startswith(c[i + 1] + ".")
                                           for i in range(len(c) - 1))]
    assert not cycles, cycles


def test_library_never_imports_inside_a_function():
    """No project import hides inside a function in the library packages (that is how a cycle gets dodged). The CLI
    (experiments/) may defer its commands' imports so that ``--help`` starts fast."""
    _, _, nested = _graph()
    inside = sorted({f"{a}:{line} imports {b}" for a, b, line in nested if not a.startswith("experiments")})
    assert not inside, inside
