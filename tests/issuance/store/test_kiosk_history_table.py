"""The kiosk's issuance history table (CVS-18 item 3) on SQLite and PostgreSQL: written with its
audit record in one transaction under service:municipality:<code> (SEC-8), serial unique, no
personal data, filters, and the short-connection writers the services' worker processes use."""
from __future__ import annotations

import datetime as dt
import json
import multiprocessing

import pytest

from mynaemu.issuance.clock import JST
from mynaemu.issuance.store import (
    CENTRE_OPERATOR, DB_NAME, KioskIssue, Store, StoreCentreTrail, StoreKioskHistory, municipality_operator,
)
from mynaemu.issuance.store.kiosk_history import COLUMNS

UTC = dt.timezone.utc

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)


def _issue(i=0, *, code="13221", at=None, serial=None, app="ABCDEFGH23456789", with_number=False):
    return KioskIssue(at=at or T0 + dt.timedelta(minutes=i), municipality_code=code, document="juminhyo",
                      method="shin", serial=serial or f"{i:016X}", verification_code=f"V{i:015d}",
                      fee=200, with_number=with_number, kiosk_id="TEST-KIOSK-0001", application_id=app)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """A fresh store's location: a SQLite file, or a fresh schema of the private PostgreSQL server."""
    if request.param == "sqlite":
        Store.open(tmp_path / "s").close()
        yield tmp_path / "s" / DB_NAME
        return
    from tests.support.pg import fresh_pg_url

    with fresh_pg_url() as url:
        Store(url).close()
        yield url


def test_a_record_is_a_history_row_and_an_audit_record_in_one_chain(location):
    with Store(location) as store:
        audit_id = store.record_kiosk_issue(_issue(1, with_number=True))
        rows = store.kiosk_history()
        trail = store.audit_rows()
        assert store.verify_audit_chain() == (1, None)
    assert len(rows) == 1 and set(rows[0]) == set(COLUMNS)
    row = rows[0]
    assert (row["municipality_code"], row["document"], row["method"], row["serial"], row["fee"],
            row["with_number"], row["application_id"], row["kiosk_id"]) == \
        ("13221", "juminhyo", "shin", "0000000000000001", 200, True, "ABCDEFGH23456789", "TEST-KIOSK-0001")
    assert dt.datetime.fromisoformat(row["at"]) == T0 + dt.timedelta(minutes=1)
    assert [r["id"] for r in trail] == [audit_id]
    record = trail[0]
    assert (record["operator"], record["terminal"], record["operation"], record["target"], record["outcome"]) == \
        ("service:municipality:13221", "TEST-KIOSK-0001", "kiosk issue", "ABCDEFGH23456789", "ok")
    assert json.loads(record["detail"]) == {"document": "juminhyo", "method": "shin", "serial": "0000000000000001",
                                            "fee": 200, "kiosk_id": "TEST-KIOSK-0001"}


def test_a_duplicate_serial_writes_neither_row_nor_record(location):
    with Store(location) as store:
        store.record_kiosk_issue(_issue(1))
        with pytest.raises(store.IntegrityError):
            store.record_kiosk_issue(_issue(2, serial="0000000000000001"))
        assert len(store.kiosk_history()) == 1
        assert len(store.audit_rows()) == 1          # the audit record went with the row
        assert store.verify_audit_chain() == (1, None)


def test_filters_by_municipality_and_instant(location):
    with Store(location) as store:
        for i in range(4):
            store.record_kiosk_issue(_issue(i, code="13221" if i % 2 == 0 else "13222",
                                            at=T0 + dt.timedelta(days=i)))
        assert [r["serial"] for r in store.kiosk_history(municipality="13222")] == [f"{1:016X}", f"{3:016X}"]
        since, until = T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=3)
        assert [r["serial"] for r in store.kiosk_history(since=since, until=until)] == [f"{1:016X}", f"{2:016X}"]
        assert store.kiosk_history(municipality="13221", since=since, until=until)[0]["serial"] == f"{2:016X}"
        assert store.kiosk_history(municipality="99999") == []


def test_an_unknown_card_is_kept_without_a_target(location):
    with Store(location) as store:
        store.record_kiosk_issue(_issue(1, app=None))
        assert store.kiosk_history()[0]["application_id"] is None
        assert store.audit_rows()[0]["target"] is None


def test_bad_values_are_refused_before_anything_is_written(location):
    with Store(location) as store:
        with pytest.raises(ValueError):
            municipality_operator("1322\n")
        with pytest.raises(ValueError):
            store.record_kiosk_issue(_issue(1, code="ABCDE"))
        with pytest.raises(ValueError):
            store.record_kiosk_issue(KioskIssue(**{**_issue(2).__dict__, "fee": -1}))
        with pytest.raises(ValueError):   # the audit refuses an empty terminal
            store.record_kiosk_issue(KioskIssue(**{**_issue(3).__dict__, "kiosk_id": " "}))
        assert store.kiosk_history() == [] and store.audit_rows() == []


def test_no_twelve_digit_run_reaches_the_trail(location):
    """Store.audit scrubs: even a 12-digit kiosk id (were one ever registered) is masked."""
    with Store(location) as store:
        store.record_kiosk_issue(KioskIssue(**{**_issue(1).__dict__, "kiosk_id": "123456789012"}))
        assert "123456789012" not in json.dumps(store.audit_rows())


def test_centre_trail_names_the_card_only_for_the_very_certificate_issued(location):
    with Store(location) as store:
        app = _a_card_with_an_auth_certificate(store)
        der = bytes(store.auth_certificate_der(4242)["der"])
    trail = StoreCentreTrail(location)
    detail = {"method": "shin", "document": "juminhyo"}
    trail.refused(at=T0, kiosk_id="TEST-KIOSK-0001", reason="cert-hold", detail=detail, auth_serial=4242, auth_der=der)
    trail.refused(at=T0, kiosk_id="TEST-KIOSK-0001", reason="chain-invalid", detail=detail, auth_serial=4242,
                  auth_der=der[:-1] + bytes([der[-1] ^ 1]))          # same serial, another certificate
    trail.refused(at=T0, kiosk_id="TEST-KIOSK-0001", reason="cert-invalid", detail=detail)
    with Store(location) as store:
        rows = [r for r in store.audit_rows() if r["operator"] == CENTRE_OPERATOR]
        assert store.verify_audit_chain()[1] is None
    assert [(r["reason"], r["target"], r["outcome"], r["operation"]) for r in rows] == [
        ("cert-hold", app, "refused", "kiosk authenticate"), ("chain-invalid", None, "refused", "kiosk authenticate"),
        ("cert-invalid", None, "refused", "kiosk authenticate")]


def _a_card_with_an_auth_certificate(store) -> str:
    """A minimal card row with an auth certificate of serial 4242 (raw rows: the table test needs
    no workflow)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from mynaemu.issuance.pki.ca import default_test_pki

    der = default_test_pki().auth_ca.certificate.public_bytes(Encoding.DER)   # any DER will do here
    app = "ABCDEFGH23456789"
    with store.transaction() as conn:
        conn.execute("INSERT INTO persons (juminhyo_code, name, birth, sex, address, municipality_code,"
                     " prefecture_romaji, city_romaji, created_at, updated_at)"
                     " VALUES ('12345678901', '見本　花子', '1990-01-01', '2', '東京都', '13221', 'Tokyo', 'Kiyose',"
                     " 'x', 'x')")
        person = conn.execute("SELECT id FROM persons").fetchone()[0]
        conn.execute("INSERT INTO applications (id, person_id, kind, decline_sign, alt_confirmed, applied_at)"
                     " VALUES (?, ?, 'first', 0, 0, 'x')", (app, person))
        conn.execute("INSERT INTO certificates (application_id, ca_kind, serial, issue_id, not_before, not_after,"
                     " der, status) VALUES (?, 'auth', 4242, 'i', 'x', 'x', ?, 'good')", (app, der))
    return app


def _writer(location, start, n):
    history = StoreKioskHistory(location)
    for i in range(start, start + n):
        history.record(_issue(i))


def test_worker_processes_write_one_table_and_one_chain(location):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(location, k * 100, 15)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    entries = StoreKioskHistory(location).entries()
    assert len(entries) == 60 and len({e["serial"] for e in entries}) == 60
    with Store(location) as store:
        assert store.verify_audit_chain() == (60, None)
        assert {r["operator"] for r in store.audit_rows()} == {municipality_operator("13221")}
