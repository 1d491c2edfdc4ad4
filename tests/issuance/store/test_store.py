"""The back office store: schema and migrations, WAL + BEGIN IMMEDIATE across processes, ids,
numbering history (NUM-7), audit redaction (SEC-8), and the RevocationSource it implements."""
import datetime as dt
import multiprocessing
import random
import sqlite3

import pytest
from cryptography import x509

from mynaemu.issuance.pki import revocation as rv
from mynaemu.issuance.numbering import is_valid_individual_number
from mynaemu.issuance.store import (
    DB_NAME, FORM_ALPHABET, MIGRATIONS, SCHEMA_VERSION, Store, StoreBusy, StoreError, StoreRevocationSource,
    check_form_id, default_home, make_form_id, scrub,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path) as s:
        yield s


def add_person(store, code="12345678901"):
    with store.transaction():
        pid = store.insert_person(juminhyo_code=code, name="番号\u3000花子", name_kana="", birth=dt.date(1980, 1, 15),
                                  sex="2", address="東京都", name_alt=None, address_alt=None, guardianship=False,
                                  municipality_code="13221", prefecture_romaji="Tokyo-to", city_romaji="Kiyose-shi",
                                  at=T0)
        store.assign_individual_number(pid, at=T0)
    return pid


# --- schema ---------------------------------------------------------------------------------

def test_schema_is_versioned_in_wal_mode_and_reopening_is_idempotent(tmp_path):
    with Store.open(tmp_path) as s:
        assert s.schema_version() == SCHEMA_VERSION == MIGRATIONS[-1][0]
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        secret = s.setting("numbering_secret")
    with Store.open(tmp_path) as s:
        assert s.setting("numbering_secret") == secret        # NUM-2: one key per deployment
        rows = s.conn.execute("SELECT version FROM schema_version").fetchall()
        assert [r[0] for r in rows] == [m[0] for m in MIGRATIONS]


def test_rule_set_is_chosen_once_per_deployment(tmp_path):
    with Store.open(tmp_path, rule_set="seed-2013") as s:
        assert s.rules.name == "seed-2013"
    with pytest.raises(StoreError, match="uses rule set 'seed-2013'"):
        Store.open(tmp_path, rule_set="current")
    with pytest.raises(ValueError, match="unknown rule set"):
        Store.open(tmp_path / "other", rule_set="nope")


def test_newer_schema_and_foreign_files_are_refused(tmp_path):
    with Store.open(tmp_path) as s:
        with s.transaction() as c:
            c.execute("INSERT INTO schema_version VALUES (?, 'future', 'x')", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this build"):
        Store.open(tmp_path)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable store"):
        Store.open(junk)


def test_home_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MYNAEMU_HOME", str(tmp_path / "h"))
    assert default_home() == tmp_path / "h"
    monkeypatch.delenv("MYNAEMU_HOME")
    assert default_home().name == "mynaemu"


def test_transaction_rolls_back_on_error(store):
    pid = add_person(store)
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.change_person(pid, at=T0, field="address", value="大阪府", reason="x", audit_id=None)
            raise RuntimeError("boom")
    assert store.person(pid)["address"] == "東京都"
    with pytest.raises(RuntimeError, match="nested"):
        with store.transaction():
            with store.transaction():
                pass


# --- concurrency ----------------------------------------------------------------------------

def _writer(path, n, tag):
    with Store(path) as s:
        for i in range(n):
            with s.transaction() as c:
                # read-modify-write inside BEGIN IMMEDIATE: no lost update between processes
                value = int(c.execute("SELECT value FROM settings WHERE key = 'counter'").fetchone()[0])
                c.execute("UPDATE settings SET value = ? WHERE key = 'counter'", (str(value + 1),))
                s.audit(at=T0, operator=tag, terminal="t", operation="count", target=None, outcome="ok")


def test_two_processes_serialise_on_begin_immediate(tmp_path):
    with Store.open(tmp_path) as s:
        with s.transaction() as c:
            c.execute("INSERT INTO settings VALUES ('counter', '0')")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path / DB_NAME, 40, f"p{i}")) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store.open(tmp_path) as s:
        assert s.setting("counter") == "80"
        assert len(s.audit_rows()) == 80
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_held_lock_gives_store_busy_after_the_timeout(tmp_path):
    Store.open(tmp_path).close()
    blocker = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with Store.open(tmp_path, busy_timeout=0.2) as s:
            with pytest.raises(StoreBusy, match="busy"):
                with s.transaction():
                    pass
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


# --- ids ------------------------------------------------------------------------------------

def test_form_ids_carry_a_check_character_that_catches_typos():
    rng = random.Random(5)
    for _ in range(200):
        good = make_form_id(rng)
        assert check_form_id(good) == good and len(good) == 16
        assert check_form_id("-".join([good[:4], good[4:8], good[8:12], good[12:]]).lower()) == good
        i = rng.randrange(16)
        wrong = good[:i] + rng.choice(FORM_ALPHABET.replace(good[i], "")) + good[i + 1:]
        with pytest.raises(ValueError, match="check character"):
            check_form_id(wrong)                                  # every single substitution
        j = rng.randrange(15)
        if good[j] != good[j + 1]:
            swapped = good[:j] + good[j + 1] + good[j] + good[j + 2:]
            with pytest.raises(ValueError, match="check character"):
                check_form_id(swapped)                            # every adjacent transposition
    with pytest.raises(ValueError, match="outside"):
        check_form_id("IIIIIIIIIIIIIIII")
    with pytest.raises(ValueError, match="16 characters"):
        check_form_id("ABC")


# --- numbering (NUM-2, NUM-7) ---------------------------------------------------------------

def test_numbers_are_valid_unique_and_keep_their_history(store):
    pid = add_person(store)
    first = store.individual_number(pid)
    assert is_valid_individual_number(first)                        # rules.md §20 M2
    with store.transaction():
        second = store.assign_individual_number(pid, at=T0 + dt.timedelta(days=1), reason="leak")
    assert second != first and store.individual_number(pid) == second
    history = store.number_history(pid)
    assert [h["number"] for h in history] == [first, second]
    assert history[0]["change_reason"] == "leak" and history[0]["valid_until"] is not None
    with pytest.raises(sqlite3.IntegrityError):  # NUM-7: a number is never given out twice
        with store.transaction() as c:
            c.execute("INSERT INTO individual_numbers (person_id, number, attempt, valid_from) VALUES (?, ?, 9, 'x')",
                      (pid, first))


# --- audit (SEC-8) --------------------------------------------------------------------------

def test_audit_scrubs_numbers_and_requires_operator_and_terminal(store):
    assert scrub("番号 123456789018 です") == "番号 ************ です"
    assert scrub("serial 1234567890123 stays") == "serial 1234567890123 stays"   # 13 digits: not a number
    store.audit(at=T0, operator="op", terminal="t1", operation="x", target="t", outcome="refused",
                reason="caller said 123456789018", detail={"n": "123456789018"})
    row = store.audit_rows()[-1]
    assert "123456789018" not in repr(row) and row["outcome"] == "refused"
    with pytest.raises(ValueError, match="operator"):
        store.audit(at=T0, operator=" ", terminal="t", operation="x", target=None, outcome="ok")


# --- RevocationSource -----------------------------------------------------------------------

def _cert_row(store, kind="auth", serial=0x4000000000000001, not_after="2031-01-15T14:59:59+00:00"):
    with store.transaction() as c:
        c.execute("INSERT INTO persons (juminhyo_code, name, birth, sex, address, municipality_code,"
                  " prefecture_romaji, city_romaji, created_at, updated_at) VALUES"
                  " ('11111111111', 'n', '1980-01-01', '1', 'a', '13221', 'p', 'c', 'x', 'x')")
        c.execute("INSERT INTO applications VALUES ('0000000000000000', 1, 'first', NULL, 0, 1, 'x', NULL)")
        cid = c.execute("INSERT INTO certificates (application_id, ca_kind, serial, issue_id, not_before, not_after,"
                        " der, status) VALUES ('0000000000000000', ?, ?, 'ID', ?, ?, x'00', 'good')",
                        (kind, serial, "2026-05-01T00:00:00+00:00", not_after)).lastrowid
        store.cert_event(cid, "issued", at=T0, reason=None, audit_id=None)
    return cid, serial


def test_store_answers_as_of_an_instant(store):
    assert isinstance(store, rv.RevocationSource)
    cid, serial = _cert_row(store)
    day = dt.timedelta(days=1)
    with store.transaction():
        store.cert_event(cid, "hold", at=T0 + 10 * day, reason="certificateHold", audit_id=None)
        store.cert_event(cid, "released", at=T0 + 12 * day, reason=None, audit_id=None)
        store.cert_event(cid, "revoked", at=T0 + 20 * day, reason="superseded", audit_id=None)
    status = lambda at: store.certificate_status("auth", serial, at)  # noqa: E731
    assert status(T0 - day).status == "unknown"                   # not issued yet
    assert status(T0 + day).status == "good"
    held = status(T0 + 11 * day)
    assert held.status == "hold" and held.reason == x509.ReasonFlags.certificate_hold
    assert status(T0 + 13 * day).status == "good"
    revoked = status(T0 + 21 * day)
    assert revoked.status == "revoked" and revoked.reason == x509.ReasonFlags.superseded
    assert revoked.revoked_at == T0 + 20 * day
    assert store.certificate_status("auth", serial + 2, T0 + day).status == "unknown"
    assert store.certificate_status("sign", serial, T0 + day).status == "unknown"
    assert [e.serial for e in store.revoked_certificates("auth", T0 + 11 * day)] == [serial]
    assert store.revoked_certificates("auth", T0 + 13 * day) == []
    entries = store.revoked_certificates("auth", T0 + 30 * day)
    assert entries == [rv.RevokedEntry(serial, T0 + 20 * day, x509.ReasonFlags.superseded)]
    with pytest.raises(ValueError, match="ca_kind"):
        store.certificate_status("both", serial, T0)
    # the thread-safe view over the same file answers the same
    source = StoreRevocationSource(store.path)
    assert source.certificate_status("auth", serial, T0 + 11 * day) == held
    assert source.revoked_certificates("auth", T0 + 30 * day) == entries


def test_status_reports_expiry_for_the_cli(store):
    cid, serial = _cert_row(store, not_after="2026-06-01T00:00:00+00:00")
    row = store.certificate_by_serial("auth", serial)
    assert store.status_at(row, dt.datetime(2026, 6, 2, tzinfo=UTC))["status"] == "expired"
    # for the protocol an expired certificate is still good (expiry is the verifier's date check)
    assert store.certificate_status("auth", serial, dt.datetime(2026, 6, 2, tzinfo=UTC)).status == "good"
