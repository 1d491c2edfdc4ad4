"""The house rules of the source tree (docs/architecture.md), checked on every run.

- no import cycle between modules, function-level imports included;
- dependencies point one way: mynaemu.tools → mynaemu.issuance → mynaemu.card;
- no source module over 600 lines (the APDU fuzzer's oracle may be longer: it is one thing);
- SQL runs only inside issuance/store/ (the harness that creates test databases excepted);
- exit codes only at the CLI edge (tools/cli/ and the `main()` of a `python -m` harness).
"""
from __future__ import annotations

import ast
import re

import pytest

from tests.support import REPO

ROOTS = {"card": "mynaemu.card", "issuance": "mynaemu.issuance", "tools": "mynaemu.tools"}
LAYER = {"mynaemu.card": 0, "mynaemu.issuance": 1, "mynaemu.tools": 2}
MAX_LINES = 600
LONG_ALLOWED = {"tools/harness/fuzz.py"}   # the fuzz oracle: one invariant checker, kept whole


def _modules() -> dict[str, object]:
    mods = {}
    for top, package in ROOTS.items():
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO / top).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if "entry" in parts:          # tools/cli/entry/__main__.py is the `mynaemu` package itself
                continue
            mods[".".join([package, *parts])] = path
    return mods


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> set[str]:
    """Every module of the tree `name` imports, at any level of the file."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name if _is_package(name) else name.rsplit(".", 1)[0]
                parts = anchor.split(".")[: len(anchor.split(".")) - node.level + 1]
                base = ".".join(parts) + ("." + node.module if node.module else "")
            # `from pkg import sub` imports the module pkg.sub; any other name is an import of pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in MODULES and t != name)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
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
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def _layer(name: str) -> int:
    return next(rank for prefix, rank in LAYER.items() if name == prefix or name.startswith(prefix + "."))


def test_the_checker_sees_the_tree():
    # guards the checks below against passing on an empty or misread tree
    assert len(MODULES) > 80
    assert "mynaemu.issuance.store.database" in GRAPH["mynaemu.issuance.store"]
    assert "mynaemu.card.core" in GRAPH["mynaemu.tools.terminal.client"] or \
        any(m.startswith("mynaemu.card") for m in GRAPH["mynaemu.tools.terminal.client"])


def test_no_import_cycles():
    assert _cycles() == []


def test_dependencies_point_one_way():
    upward = sorted(f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps if _layer(b) > _layer(a))
    assert upward == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    path = MODULES[name]
    rel = path.relative_to(REPO).as_posix()
    if rel in LONG_ALLOWED:
        pytest.skip("the fuzz oracle stays one module")
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{rel}: {lines} lines (limit {MAX_LINES})"


SQL = re.compile(r"\.execute\(\s*f?[\"'](?:\s*)(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|BEGIN)\b", re.I)


def test_sql_only_in_the_store():
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("mynaemu.issuance.store") or name == "mynaemu.tools.harness.pgserver":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SQL.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []


def test_exit_codes_only_at_the_cli_edge():
    # No `exit_code` outside tools/cli: domain errors say what went wrong, the CLI picks the code.
    # sys.exit / SystemExit only in tools/cli and in modules that are programs of their own
    # (`python -m …` with an `if __name__ == "__main__":` block: the harnesses, the CA vector tool).
    attribute = re.compile(r"\bexit_code\b")
    leaving = re.compile(r"\bsys\.exit\(|\bSystemExit\(")
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("mynaemu.tools.cli"):
            continue
        text = path.read_text(encoding="utf-8")
        program = 'if __name__ == "__main__":' in text
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if attribute.search(code) or (leaving.search(code) and not program):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []
