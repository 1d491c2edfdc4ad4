"""The demo's own staff (issuance/staff/demo.py): each step logs in as the account whose duty it is,
through the same authorisation as the CLI, and the audit names that account."""
from __future__ import annotations

import datetime as dt

import pytest

from mynaemu.issuance.lifecycle.workflow import Workflow
from mynaemu.issuance.staff.authorise import AuthRefused
from mynaemu.issuance.staff.demo import DemoStaff
from mynaemu.issuance.store import Store

JST = dt.timezone(dt.timedelta(hours=9))
T = dt.datetime(2026, 5, 1, 10, tzinfo=JST)


def test_each_step_runs_as_the_account_of_its_duty(tmp_path):
    with Store.open(tmp_path / "home") as store:
        staff = DemoStaff(store, at=T - dt.timedelta(days=1))
        assert {staff.login(store, op, T) for op in ("apply", "deliver")} == {"demo-counter"}
        assert staff.login(store, "generate", T) == "demo-issuer"
        assert staff.login(store, "suspend", T) == "demo-callcentre"
        app_id = Workflow(store, operator=staff.login(store, "apply", T), terminal="demo").apply(
            name="見本\u3000花子", birth=dt.date(1990, 4, 1), sex="2", address="東京都", at=T)
        assert store.audit_rows(app_id)[-1]["operator"] == "demo-counter"
        with pytest.raises(AuthRefused):          # before the accounts existed, nobody holds the duty
            staff.login(store, "apply", T - dt.timedelta(days=2))
        with pytest.raises(ValueError, match="no demo account"):   # nor the officer's work
            staff.login(store, "staff add", T)
