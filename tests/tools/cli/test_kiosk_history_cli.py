"""`mynaemu issue kiosk-history` (CVS-18 item 3: the issuance history can be printed): the store's
history as lines or JSON, filtered by municipality and by JST day; exit 5 for a role without the
right, exit 2 for bad dates or codes (nothing printed)."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from mynaemu.issuance.clock import JST
from mynaemu.issuance.store import KioskIssue, Store
from mynaemu.tools.cli import main
from tests.support.cli import run_issue
from tests.support.staff import PASSWORD, staff_account


# (instant JST, municipality, serial): the second is late on 2 March JST (14:30 UTC), the third just after midnight
ROWS = [(dt.datetime(2026, 3, 1, 9, 0, tzinfo=JST), "13221", "000000000000000A"),
        (dt.datetime(2026, 3, 2, 23, 30, tzinfo=JST), "13222", "000000000000000B"),
        (dt.datetime(2026, 3, 3, 0, 10, tzinfo=JST), "13221", "000000000000000C")]
AT = "2026-03-04T09:00:00+09:00"


@pytest.fixture
def kiosk_home(home):
    with Store.open(home) as store:
        for at, code, serial in ROWS:
            store.record_kiosk_issue(KioskIssue(at=at, municipality_code=code, document="juminhyo", method="shin",
                                                serial=serial, verification_code="VC" + serial, fee=200,
                                                with_number=serial.endswith("B"), kiosk_id="TEST-KIOSK-0001",
                                                application_id=None if code == "13222" else "ABCDEFGH23456789"))
    return home


def _serials(result) -> list[str]:
    return [row["serial"] for row in json.loads(result.stdout)]


def test_prints_one_line_per_document_in_jst(kiosk_home):
    out = run_issue("kiosk-history", "--at", AT).stdout.splitlines()
    assert len(out) == 3
    assert out[0] == ("2026-03-01T09:00:00+09:00 13221 juminhyo shin serial 000000000000000A 検証コード "
                      "VC000000000000000A ¥200 card ABCDEFGH23456789 kiosk TEST-KIOSK-0001")
    assert "個人番号あり" in out[1] and "card -" in out[1] and "個人番号あり" not in out[2]
    run_issue("kiosk-history", "--municipality", "13222", "--from", "2026-03-02", "--at", AT, "--terminal", "desk-3")
    with Store.open(kiosk_home) as store:   # every print is on record (SEC-8)
        last = store.audit_rows()[-1]
    assert (last["operator"], last["terminal"], last["operation"], last["target"], last["outcome"]) == \
        ("op-cli", "desk-3", "kiosk-history", None, "ok")
    assert json.loads(last["detail"]) == {"municipality": "13222", "from": "2026-03-02", "to": None, "records": 1}


def test_json_and_filters(kiosk_home):
    rows = json.loads(run_issue("kiosk-history", "--json", "--at", AT).stdout)
    assert [r["serial"] for r in rows] == ["000000000000000A", "000000000000000B", "000000000000000C"]
    assert rows[1]["at"] == "2026-03-02T23:30:00+09:00" and rows[1]["with_number"] is True
    assert set(rows[0]) == {"id", "at", "recorded_at", "municipality_code", "document", "method", "serial",
                            "verification_code", "fee", "with_number", "application_id", "kiosk_id"}
    assert _serials(run_issue("kiosk-history", "--json", "--municipality", "13221", "--at", AT)) == \
        ["000000000000000A", "000000000000000C"]
    # days are JST days, both ends inclusive
    assert _serials(run_issue("kiosk-history", "--json", "--from", "2026-03-02", "--at", AT)) == \
        ["000000000000000B", "000000000000000C"]
    assert _serials(run_issue("kiosk-history", "--json", "--to", "2026-03-02", "--at", AT)) == \
        ["000000000000000A", "000000000000000B"]
    assert _serials(run_issue("kiosk-history", "--json", "--from", "2026-03-02", "--to", "2026-03-02",
                              "--at", AT)) == ["000000000000000B"]
    assert _serials(run_issue("kiosk-history", "--json", "--municipality", "13222", "--from", "2026-03-03",
                              "--at", AT)) == []
    assert run_issue("kiosk-history", "--from", "2027-01-01", "--at", AT).stdout.strip() == \
        "no document was issued at a kiosk in this range"


@pytest.mark.parametrize("args", [
    ["--from", "2026-02-30"], ["--to", "yesterday"], ["--from", "2026-3-1"],
    ["--from", "2026-03-03", "--to", "2026-03-02"], ["--municipality", "1322"], ["--municipality", "13221\n"],
    ["--municipality", "１３２２１"],
])
def test_bad_dates_and_codes_exit_2_and_print_nothing(kiosk_home, args):
    result = run_issue("kiosk-history", *args, "--at", AT, code=2)
    assert result.stdout == ""
    assert len([line for line in result.stderr.splitlines() if line.strip()]) >= 1


@pytest.mark.parametrize("role,code", [("officer", 0), ("counter", 0), ("issuer", 5), ("callcentre", 5),
                                       ("viewer", 5)])
def test_only_the_officer_and_the_counter_may_print_it(kiosk_home, role, code):
    staff_id, _ = staff_account(kiosk_home, staff_id=f"kh-{role}", rights=[role])
    env = {"MYNAEMU_HOME": str(kiosk_home), "MYNAEMU_OPERATOR": staff_id, "MYNAEMU_PASSWORD": PASSWORD,
           "MYNAEMU_DB": None, "MYNAEMU_TERMINAL": None}
    result = CliRunner().invoke(main, ["issue", "kiosk-history", "--json", "--at", AT], env=env,
                                catch_exceptions=False)
    assert result.exit_code == code, result.output
    if code == 0:
        assert len(json.loads(result.stdout)) == 3
    else:
        assert result.stdout == "" and "kiosk-history" in result.stderr
        with Store.open(kiosk_home) as store:   # the refusal is audited (SEC-8)
            last = store.audit_rows()[-1]
        assert (last["operator"], last["operation"], last["outcome"]) == (staff_id, "kiosk-history", "refused")
