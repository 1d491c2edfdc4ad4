"""The rights table (SEC-6) as data: vectors/staff/rights.csv, written by hand from issue 13,
against the decision of issuance/staff/rights.py, cell by cell (role × operation), and for the
right `number` (SEC-1) on its own. The same table is driven through the CLI in
tests/tools/cli/test_staff_cli.py."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mynaemu.issuance.staff.rights import NUMBER, ROLES, TABLE, decide

CSV = Path(__file__).resolve().parents[3] / "vectors" / "staff" / "rights.csv"


def load_rows() -> list[dict]:
    with CSV.open(encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


ROWS = load_rows()
CELLS = [(row["operation"], role, row[role]) for row in ROWS for role in ROLES]


def test_the_csv_has_the_five_roles_and_every_operation_of_the_code_once():
    with CSV.open(encoding="utf-8") as f:
        header = next(line for line in f if not line.startswith("#")).strip().split(",")
    assert header == ["operation", *ROLES]
    ops = [row["operation"] for row in ROWS]
    assert len(ops) == len(set(ops))
    assert set(ops) == set(TABLE)
    assert all(row[role] in ("yes", "-", NUMBER) for row in ROWS for role in ROLES)


@pytest.mark.parametrize("operation,role,cell", CELLS, ids=[f"{o}|{r}" for o, r, _ in CELLS])
def test_cell(operation, role, cell):
    alone = decide(operation, {role})
    with_number = decide(operation, {role, NUMBER})
    if cell == "yes":
        assert alone.allowed and with_number.allowed
    elif cell == "-":
        assert not alone.allowed and alone.missing == "role"
        assert not with_number.allowed and with_number.missing == "role"
    else:
        assert not alone.allowed and alone.missing == NUMBER
        assert with_number.allowed


@pytest.mark.parametrize("operation", [row["operation"] for row in ROWS])
def test_the_number_right_alone_is_no_role(operation):
    """SEC-1: `number` is granted on its own and adds to a role; by itself it runs nothing."""
    assert not decide(operation, {NUMBER}).allowed
    assert not decide(operation, set()).allowed


def test_every_role_may_run_status_and_change_its_own_password():
    for operation in ("status", "staff passwd"):
        assert all(decide(operation, {role}).allowed for role in ROLES)


def test_an_account_with_two_roles_may_run_what_either_may():
    assert decide("generate", {"counter", "issuer"}).allowed and decide("apply", {"counter", "issuer"}).allowed
    assert not decide("suspend", {"counter", "issuer"}).allowed


def test_an_unknown_operation_is_an_error_not_a_refusal():
    with pytest.raises(ValueError, match="no such operation"):
        decide("format-disk", {"officer"})
