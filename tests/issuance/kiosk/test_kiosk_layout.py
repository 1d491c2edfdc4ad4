"""The kiosk's rooms keep their shape (issue 14): who may import whom, and how big a module grows.

Read from the source (module- and function-level imports alike), so a lazy import inside a
function cannot hide a cycle or a terminal reaching into the centre.
"""
from __future__ import annotations

import ast

import pytest

from tests.support import REPO

PACKAGE = "mynaemu.issuance.kiosk"
KIOSK_DIR = REPO / "issuance" / "kiosk"
MODULES = sorted(p.stem for p in KIOSK_DIR.glob("*.py") if p.stem != "__init__")


def _imports(path) -> set[str]:
    """Every mynaemu module `path` imports, anywhere in it ("from pkg import mod" names pkg.mod)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("mynaemu.")}


def _kiosk_imports(path) -> set[str]:
    """The issuance/kiosk modules `path` imports, by their short names."""
    prefix = PACKAGE + "."
    return {name[len(prefix):] for name in _imports(path) if name.startswith(prefix)} & set(MODULES)


GRAPH = {module: _kiosk_imports(KIOSK_DIR / f"{module}.py") for module in MODULES}


def test_the_graph_is_read_from_the_source():
    assert {"centre", "centre_http", "directory", "keyfiles", "municipality", "residents", "services", "trust",
            "wire"} <= set(MODULES)
    assert "wire" in GRAPH["centre"] and "centre" in GRAPH["services"]


def test_no_import_cycle_between_the_kiosk_modules():
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for target in sorted(GRAPH[module]):
            visit(target)
        path.pop()
        done.add(module)

    for module in MODULES:
        visit(module)


def test_the_wire_contract_imports_no_service():
    assert GRAPH["wire"] == set()
    # from the rest of the project only Japan time (the service hours are JST)
    allowed = ("mynaemu.issuance.policy", "mynaemu.issuance.clock")
    assert not {name for name in _imports(KIOSK_DIR / "wire.py") if not name.startswith(allowed)}


@pytest.mark.parametrize("module", ["trust", "residents", "municipality", "documents", "centre"])
def test_a_service_imports_no_door_and_no_wiring(module):
    assert not GRAPH[module] & {"centre_http", "services", "directory", "keyfiles"}


def test_the_centre_knows_no_municipality_and_the_municipality_no_centre():
    assert "municipality" not in GRAPH["centre"]
    assert not GRAPH["municipality"] & {"centre", "centre_http", "services"}
    assert not GRAPH["trust"] - {"wire"}


def test_one_module_wires_the_services_together():
    wiring = {module for module, targets in GRAPH.items() if {"centre", "municipality"} <= targets}
    assert wiring == {"services"}
    # only the worker processes (workers.py) build on the wiring; no service or door does
    assert {module for module, targets in GRAPH.items() if "services" in targets} <= {"workers"}


def test_the_terminal_speaks_only_the_wire_contract_and_the_document_format():
    terminal = REPO / "tools" / "terminal" / "kiosk.py"
    assert _kiosk_imports(terminal) == {"wire", "documents"}


@pytest.mark.parametrize("path", [*(f"issuance/kiosk/{m}.py" for m in MODULES), "tools/terminal/kiosk.py",
                                  "tools/cli/kiosk.py", "tools/cli/demo.py"])
def test_no_kiosk_module_is_over_600_lines(path):
    assert len((REPO / path).read_text(encoding="utf-8").splitlines()) < 600


def test_exit_codes_live_in_the_cli_not_in_the_services():
    for module in MODULES:
        tree = ast.parse((KIOSK_DIR / f"{module}.py").read_text(encoding="utf-8"))
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        names |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        assert not {name for name in names if "exit" in name.lower() and not name.startswith("__")}, module
