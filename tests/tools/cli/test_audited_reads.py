"""Reads are on record too (issue 13, SEC-8: "everything done after identifying" a person, and
the security officer's own reads of the trail): `issue status` with and without --reveal, a
status of an unknown card (refused: probing), `issue audit` and `audit --verify`, `staff list`.

Each read adds exactly one record naming the member of staff, the terminal and the card, and the
records are sealed into the chain like every other (`audit --verify` stays intact)."""
from __future__ import annotations

import json

from mynaemu.issuance.store import make_form_id
from tests.support.cli import run_issue
from tests.support.store_rows import dump, last_audit


def _card(home) -> str:
    app_id = run_issue("apply", "--name", "見本\u3000読子", "--birth", "1985-03-03", "--sex", "2",
                       "--address", "東京都清瀬市試験町２丁目", "--at", "2026-05-01").stdout.strip()
    return app_id


def test_plain_status_is_one_audit_record_without_the_number(home):
    app_id = _card(home)
    before = len(dump(home)["audit"])
    doc = json.loads(run_issue("status", app_id, "--json", "--at", "2026-05-02", "--terminal", "win-3").stdout)
    rows = dump(home)["audit"]
    assert len(rows) == before + 1
    record = last_audit(home)
    assert (record["operator"], record["terminal"], record["operation"], record["target"], record["outcome"]) == \
        ("op-cli", "win-3", "status", doc["id"], "ok")
    assert record["at"].startswith("2026-05-01T15:00:00")      # the read's --at (JST midnight)
    # the masked number is not in the record, nor any 12-digit run
    assert doc["individual_number"][-4:] not in json.dumps(record, default=str)


def test_reveal_is_its_own_operation(home):
    app_id = _card(home)
    run_issue("status", app_id, "--reveal", "--at", "2026-05-02")
    assert last_audit(home)["operation"] == "status --reveal"


def test_status_of_an_unknown_card_is_a_refused_record(home):
    _card(home)
    unknown = make_form_id()
    before = dump(home)
    result = run_issue("status", unknown, "--at", "2026-05-02", code=3)
    assert "no application" in result.stderr
    record = last_audit(home)
    assert (record["operation"], record["target"], record["outcome"]) == ("status", unknown, "refused")
    after = dump(home)
    assert len(after["audit"]) == len(before["audit"]) + 1
    assert {k: v for k, v in after.items() if not k.startswith("audit")} == \
        {k: v for k, v in before.items() if not k.startswith("audit")}


def test_audit_reads_are_recorded_after_they_read(home):
    app_id = _card(home)
    rows = json.loads(run_issue("audit", app_id, "--json", "--at", "2026-05-02").stdout)
    assert [r["operation"] for r in rows] == ["apply"]          # the read is not in its own output
    record = last_audit(home)
    assert (record["operation"], record["target"], record["outcome"]) == ("audit", app_id, "ok")
    assert json.loads(record["detail"]) == {"records": 1}
    everything = json.loads(run_issue("audit", "--json", "--at", "2026-05-02").stdout)
    assert everything[-1]["operation"] == "audit" and everything[-1]["target"] == app_id
    record = last_audit(home)
    assert record["target"] is None and json.loads(record["detail"]) == {"records": len(everything)}


def test_verify_is_recorded_and_the_read_records_are_chained(home):
    app_id = _card(home)
    run_issue("status", app_id, "--at", "2026-05-02")
    run_issue("audit", "--at", "2026-05-02")
    total = len(dump(home)["audit"])
    doc = json.loads(run_issue("audit", "--verify", "--json", "--at", "2026-05-02").stdout)
    assert doc == {"intact": True, "records": total, "problem": None}
    record = last_audit(home)
    assert record["operation"] == "audit"
    assert json.loads(record["detail"]) == {"intact": True, "records": total, "verify": True}
    again = json.loads(run_issue("audit", "--verify", "--json", "--at", "2026-05-02").stdout)
    assert again == {"intact": True, "records": total + 1, "problem": None}


def test_staff_list_is_recorded(home):
    run_issue("staff", "list", "--at", "2026-05-02")
    record = last_audit(home)
    assert (record["operator"], record["operation"], record["outcome"]) == ("op-cli", "staff list", "ok")
    assert record["reason"] == "1 accounts"


def test_the_summary_a_step_prints_is_not_a_second_record(home):
    """`receive` prints the card's state: one record (the step's), not a status read as well."""
    app_id = _card(home)
    before = len(dump(home)["audit"])
    run_issue("receive", app_id, "--at", "2026-05-02")
    assert len(dump(home)["audit"]) == before + 1 and last_audit(home)["operation"] == "receive"


def test_the_officers_review_filters(home, issue_staff, monkeypatch):
    """SEC-8: the security officer reviews the trail monthly: by period, member of staff, outcome
    and operation; the filters used are in the review's own record."""
    app_id = _card(home)
    run_issue("receive", app_id, "--at", "2026-05-03")
    issue_staff(home, staff_id="viewer-1", rights=["viewer"])
    run_issue("apply", "--name", "見本\u3000断子", "--birth", "1985-03-03", "--sex", "2", "--address", "東京都",
              "--at", "2026-06-01", code=5)                                  # viewer-1 refused
    monkeypatch.setenv("MYNAEMU_OPERATOR", "op-cli")                    # same test password

    def review(*args):
        return json.loads(run_issue("audit", "--json", *args).stdout)

    may = review("--since", "2026-05-01", "--until", "2026-06-01")
    assert [r["operation"] for r in may] == ["apply", "receive"]
    later = review("--since", "2026-05-03")
    assert {"receive", "apply"} <= {r["operation"] for r in later}
    assert all(r["at"] >= "2026-05-02T15:00:00+00:00" for r in later) and len(later) < len(review())
    refused = review("--outcome", "refused")
    assert [(r["operator"], r["operation"]) for r in refused] == [("viewer-1", "apply")]
    by_viewer = review("--by", "VIEWER-1")
    assert {r["operator"] for r in by_viewer} == {"viewer-1"} and ("apply", "refused") in \
        {(r["operation"], r["outcome"]) for r in by_viewer}
    assert {r["operation"] for r in review("--operation", "receive")} == {"receive"}
    assert review("--by", "nobody") == []
    record = last_audit(home)
    assert json.loads(record["detail"]) == {"records": 0, "filters": {"operator": "nobody"}}


def test_review_filters_refuse_nonsense(home):
    run_issue("audit", "--since", "2026-06-01", "--until", "2026-05-01", code=2)
    run_issue("audit", "--verify", "--outcome", "refused", code=2)
    run_issue("audit", "--outcome", "maybe", code=2)
    run_issue("audit", "--since", "2026-02-30", code=2)
