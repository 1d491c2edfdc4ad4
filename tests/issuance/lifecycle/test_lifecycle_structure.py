"""The lifecycle package's house rules, checked on its source (issue 14):

 - the steps change a card's state only through the table: `set_card_state` is called in one
   place (Workflow._enter, which takes the state from TRANSITIONS), and every operation name a
   step passes to the state check, the transition or the certificate effect is a row of
   TRANSITIONS — and every row is used by some step;
 - no SQL: the lifecycle modules reach the database only through the store's methods;
 - no module over 600 lines.
"""
from __future__ import annotations

import ast

import pytest

from mynaemu.issuance.lifecycle.transitions import TRANSITIONS
from tests.support import REPO

PACKAGE = REPO / "issuance" / "lifecycle"
MODULES = sorted(PACKAGE.glob("*.py"))
# the Workflow helpers that take an operation name, and the position of that argument
OPERATION_ARG = {"_require": 3, "_enter": 1, "_certs_follow": 1}


def _tree(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            yield node


def test_the_package_has_its_modules():
    names = {p.stem for p in MODULES}
    assert {"workflow", "transitions", "steps_apply", "steps_issue", "steps_suspend", "steps_change",
            "steps_end", "cardwrite", "batch"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_under_600_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) < 600


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_sql_outside_the_store(path):
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("conn", "execute", "executemany", "cursor"), \
                f"{path.name}:{node.lineno} reaches the database directly ({node.attr})"


def test_card_states_change_only_through_the_table():
    setters = []
    for path in MODULES:
        tree = _tree(path)
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef):
                for call in _calls(func):
                    if call.func.attr == "set_card_state":
                        setters.append((path.name, func.name))
    assert setters == [("workflow.py", "_enter")]


def test_every_operation_a_step_names_is_a_row_and_every_row_is_used():
    used = set()
    for path in MODULES:
        for call in _calls(_tree(path)):
            position = OPERATION_ARG.get(call.func.attr)
            if position is None or len(call.args) <= position:
                continue
            arg = call.args[position]
            if isinstance(arg, ast.Name) and arg.id == "operation":
                continue  # the helpers' own pass-through
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), \
                f"{path.name}:{call.lineno}: {call.func.attr} takes a literal operation name"
            assert arg.value in TRANSITIONS, f"{path.name}:{call.lineno}: {arg.value!r} is not in TRANSITIONS"
            used.add(arg.value)
    for path in MODULES:  # rows read directly (TRANSITIONS["replaced"].allows(...))
        for node in ast.walk(_tree(path)):
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                    and node.value.id == "TRANSITIONS" and isinstance(node.slice, ast.Constant)):
                used.add(node.slice.value)
    assert used == set(TRANSITIONS)
