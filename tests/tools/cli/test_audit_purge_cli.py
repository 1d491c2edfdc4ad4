"""`mynaemu issue audit-purge` (issue 13, SEC-8, SEC-12): the officer's purge of audit records
past their 5 years, through the command line (the rule itself: tests/issuance/staff/test_retention.py).

The store's first records are written with the machine's clock set back to 2019 (clock.utc_now
patched in this process; the CLI runs in-process too), then the staff account is made today."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from mynaemu.issuance import clock
from mynaemu.issuance.clock import JST
from mynaemu.issuance.store import Store
from tests.support.cli import run_issue
from tests.support.store_rows import dump

OLD = dt.datetime(2019, 4, 1, 10, 0, tzinfo=JST)


@pytest.fixture
def home(tmp_path, monkeypatch, issue_staff):
    home = tmp_path / "home"
    monkeypatch.setenv("MYNAEMU_HOME", str(home))
    monkeypatch.delenv("MYNAEMU_TERMINAL", raising=False)
    monkeypatch.setattr(clock, "utc_now", lambda: OLD)
    with Store.open(home) as store:
        for k in range(6):
            store.audit(at=OLD, operator="old-clerk", terminal="t", operation="apply", target=None, outcome="ok")
    monkeypatch.undo()
    monkeypatch.setenv("MYNAEMU_HOME", str(home))
    monkeypatch.delenv("MYNAEMU_TERMINAL", raising=False)
    issue_staff(home, staff_id="op-cli")
    return home


def test_purge_then_verify_then_history(home):
    out = run_issue("audit-purge", "--before", "2020-01-01").stdout.splitlines()
    assert out[0] == "purged 6 audit records (chain positions 1..6, dated 2019-04-01T10:00:00+09:00 .. " \
                     "2019-04-01T10:00:00+09:00)"
    assert out[1].startswith("kept from position 7 on:")
    assert run_issue("audit", "--verify").stdout.startswith("audit trail intact:")
    doc = json.loads(run_issue("audit-purge", "--before", "2020-01-01", "--history", "--json").stdout)
    assert doc["records"] == 0 and [(h["first_seq"], h["last_seq"], h["operator"]) for h in doc["history"]] == \
        [(1, 6, "op-cli")]
    operations = [r["operation"] for r in json.loads(run_issue("audit", "--json").stdout)]
    assert operations.count("audit-purge") == 2 and "apply" not in operations


def test_dry_run_deletes_nothing(home):
    before = len(dump(home)["audit"])
    doc = json.loads(run_issue("audit-purge", "--before", "2020-01-01", "--dry-run", "--json").stdout)
    assert doc["records"] == 6 and doc["dry_run"] is True
    assert len(dump(home)["audit"]) == before + 1 and dump(home)["audit_purges"] == []


def test_refusals_are_one_line_and_delete_nothing(home):
    before = dump(home)
    too_young = run_issue("audit-purge", "--before", "2025-01-01", code=1)
    assert too_young.stderr.count("\n") == 1 and "kept 5 years" in too_young.stderr
    future = run_issue("audit-purge", "--before", "2020-01-01", "--at", "2040-01-01", code=1)
    assert future.stderr.count("\n") == 1 and "after this machine's clock" in future.stderr
    bad = run_issue("audit-purge", "--before", "2019-02-30", code=2)
    assert bad.stderr.count("\n") == 1
    run_issue("audit-purge", code=2)                       # --before is required
    after = dump(home)
    assert after["audit"][:len(before["audit"])] == before["audit"] and after["audit_purges"] == []


def test_only_the_officer_may(home, issue_staff):
    issue_staff(home, staff_id="clerk", rights=["counter", "number"])
    result = run_issue("audit-purge", "--before", "2020-01-01", code=5)
    assert "holds no role that may run audit-purge" in result.stderr
    assert dump(home)["audit_purges"] == []
