"""A staff ID never holds a run of exactly 12 digits: it would read as a 個人番号 (SEC-1), and the
audit masks such runs, so the trail could no longer tell who acted (SEC-8)."""
from __future__ import annotations

import datetime as dt

import pytest

from mynaemu.issuance.clock import JST
from mynaemu.issuance.staff.accounts import Accounts, StaffInputError, check_staff_id
from mynaemu.issuance.store import Store
from tests.support.staff import CHEAP


@pytest.mark.parametrize("bad", ["123456789012", "k123456789012", "a.123456789012-b"])
def test_twelve_digits_in_a_row_are_refused(bad):
    with pytest.raises(StaffInputError, match="12 digits"):
        check_staff_id(bad)


@pytest.mark.parametrize("good", ["k12345678901", "k1234567890123", "1234-5678-9012", "op-cli"])
def test_other_digits_are_fine(good):
    assert check_staff_id(good) == good


def test_init_refuses_such_an_officer_and_writes_nothing(tmp_path):
    with Store.open(tmp_path / "home") as store:
        with pytest.raises(StaffInputError):
            Accounts(store, terminal="t", hasher=CHEAP).init_officer("x123456789012", at=dt.datetime(2026, 1, 1, tzinfo=JST))
        assert store.conn.execute("SELECT count(*) FROM staff").fetchone()[0] == 0
