"""The audit trail's retention (issue 13, SEC-8 5 years, SEC-12 deletion with a history):
issuance/staff/retention.py over store/audit_chain.py, on SQLite and PostgreSQL.

Records are written with the machine's clock set back (clock.utc_now patched), so their
`recorded_at` is really old; the purge then runs on today's clock."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from mynaemu.issuance import clock
from mynaemu.issuance.clock import JST
from mynaemu.issuance.lifecycle.workflow import Workflow
from mynaemu.issuance.staff.retention import RetentionRefused, keep_from, purge
from mynaemu.issuance.store import Store, audit_chain
from tests.support.pg import BACKENDS, open_store

NOW = dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.timezone.utc)     # "the machine's clock" in these tests


def jst(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=JST)


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    with open_store(request.param, tmp_path) as s:
        yield s


def write(store, monkeypatch, *, at: dt.datetime, written: dt.datetime, n: int = 1, operation: str = "x") -> None:
    """n records dated `at`, written when the machine's clock said `written`."""
    monkeypatch.setattr(clock, "utc_now", lambda: written)
    for _ in range(n):
        store.audit(at=at, operator="op", terminal="t", operation=operation, target=None, outcome="ok")
    monkeypatch.setattr(clock, "utc_now", lambda: NOW)


def rows(store):
    return [dict(r) for r in store.conn.execute("SELECT id, chain_seq, at, operation FROM audit ORDER BY chain_seq")]


def officer_purge(store, before, *, at=NOW, dry_run=False):
    return purge(store, actor="sato", terminal="t", at=at, before=before, dry_run=dry_run, now=NOW)


# --- the rule -----------------------------------------------------------------------------------

def test_keep_from_is_five_calendar_years_in_jst():
    assert keep_from(jst(2026, 12, 6, 9, 30)) == jst(2021, 12, 6, 9, 30)
    assert keep_from(jst(2028, 2, 29, 12, 0)) == jst(2023, 2, 28, 12, 0)
    # 2026-12-05T20:00Z is already 12-06 in Japan
    assert keep_from(dt.datetime(2026, 12, 5, 20, 0, tzinfo=dt.timezone.utc)).date() == dt.date(2021, 12, 6)


def test_before_inside_the_five_years_is_refused_and_nothing_changes(store, monkeypatch):
    write(store, monkeypatch, at=jst(2019, 1, 1), written=jst(2019, 1, 1), n=3)
    before = rows(store)
    at = jst(2026, 12, 6, 9, 0)
    officer_purge(store, dt.date(2021, 12, 6), at=at, dry_run=True)      # the last day allowed
    with pytest.raises(RetentionRefused, match="kept 5 years"):
        officer_purge(store, dt.date(2021, 12, 7), at=at)                # one day too late
    assert rows(store)[:3] == before and store.audit_purges() == []


def test_a_purge_dated_after_the_machine_clock_is_refused(store, monkeypatch):
    write(store, monkeypatch, at=jst(2010, 1, 1), written=jst(2010, 1, 1), n=2)
    with pytest.raises(RetentionRefused, match="after this machine's clock"):
        officer_purge(store, dt.date(2030, 1, 1), at=NOW + dt.timedelta(days=3650))
    assert len(rows(store)) == 2


# --- what goes --------------------------------------------------------------------------------

def test_the_old_prefix_goes_the_rest_verifies_and_the_history_names_it(store, monkeypatch):
    write(store, monkeypatch, at=jst(2018, 4, 1), written=jst(2018, 4, 1), n=2, operation="older")
    write(store, monkeypatch, at=jst(2019, 4, 1), written=jst(2019, 4, 1), n=3, operation="old")
    write(store, monkeypatch, at=jst(2023, 4, 1), written=jst(2023, 4, 1), n=3, operation="young")
    result = officer_purge(store, dt.date(2019, 1, 1))
    assert (result.records, result.first_seq, result.last_seq) == (2, 1, 2)
    assert store.verify_audit_chain() == (7, None)
    result = officer_purge(store, dt.date(2021, 1, 1))
    assert (result.records, result.first_seq, result.last_seq) == (3, 3, 5)
    left = rows(store)
    assert [r["operation"] for r in left] == ["young"] * 3 + ["audit-purge"] * 2
    assert [r["chain_seq"] for r in left] == [6, 7, 8, 9, 10]
    assert store.verify_audit_chain() == (5, None)
    history = store.audit_purges()
    assert [(h["first_seq"], h["last_seq"], h["records"], h["operator"]) for h in history] == \
        [(1, 2, 2, "sato"), (3, 5, 3, "sato")]
    detail = json.loads(dict(store.conn.execute("SELECT detail FROM audit WHERE chain_seq = 10").fetchone())["detail"])
    assert detail["last_seq"] == 5 and detail["last_hash"] == audit_chain.hash_text(history[-1]["last_hash"])
    # the young ones were written in 2023: nothing more goes before 2028
    result = officer_purge(store, dt.date(2021, 12, 1))
    assert result.records == 0 and result.stopped_by["chain_seq"] == 6
    assert store.verify_audit_chain() == (6, None)


def test_old_by_step_date_but_written_recently_is_kept(store, monkeypatch):
    """A trail driven at simulated dates (steps dated 2015, run in 2025) is kept 5 real years."""
    write(store, monkeypatch, at=jst(2015, 1, 1), written=jst(2018, 1, 1), n=2, operation="really-old")
    write(store, monkeypatch, at=jst(2015, 6, 1), written=jst(2025, 1, 1), n=2, operation="simulated")
    write(store, monkeypatch, at=jst(2015, 7, 1), written=jst(2018, 2, 1), n=2, operation="really-old-after")
    result = officer_purge(store, dt.date(2020, 1, 1))
    assert result.records == 2
    assert result.stopped_by["chain_seq"] == 3 and result.stopped_by["recorded_at"].startswith("2024-12-31T15:00")
    # only a prefix goes: the really old records behind the young one stay
    assert [r["operation"] for r in rows(store)] == ["simulated"] * 2 + ["really-old-after"] * 2 + ["audit-purge"]
    assert store.verify_audit_chain()[1] is None


def test_a_dry_run_deletes_nothing_and_is_on_record(store, monkeypatch):
    write(store, monkeypatch, at=jst(2018, 1, 1), written=jst(2018, 1, 1), n=4)
    result = officer_purge(store, dt.date(2019, 1, 1), dry_run=True)
    assert result.records == 4 and result.dry_run
    assert len(rows(store)) == 5 and store.audit_purges() == []
    last = dict(store.conn.execute("SELECT operation, detail FROM audit ORDER BY chain_seq DESC LIMIT 1").fetchone())
    assert last["operation"] == "audit-purge" and json.loads(last["detail"])["dry_run"] is True
    assert store.verify_audit_chain() == (5, None)


def test_pointers_to_purged_records_are_cleared_not_the_rows(store, monkeypatch):
    """A card made in 2019 keeps its events after its steps' records are purged."""
    monkeypatch.setattr(clock, "utc_now", lambda: jst(2019, 5, 1, 10))
    wf = Workflow(store, operator="op", terminal="t")
    app_id = wf.apply(name="見本\u3000古子", birth=dt.date(1970, 1, 1), sex="2", address="東京都清瀬市古町１",
                      at=jst(2019, 5, 1, 10))
    wf.receive(app_id, at=jst(2019, 5, 2, 10))
    monkeypatch.setattr(clock, "utc_now", lambda: NOW)
    events = [tuple(r) for r in store.conn.execute("SELECT at, to_state FROM card_events WHERE application_id = ?",
                                                   (app_id,))]
    assert officer_purge(store, dt.date(2020, 1, 1)).records == 2
    assert [tuple(r) for r in store.conn.execute("SELECT at, to_state FROM card_events WHERE application_id = ?",
                                                 (app_id,))] == events
    assert store.conn.execute("SELECT count(*) FROM card_events WHERE audit_id IS NOT NULL").fetchone()[0] == 0
    assert store.verify_audit_chain()[1] is None
    assert store.card(app_id)["state"] == "received"


def test_every_table_pointing_at_the_audit_is_cleared_by_a_purge(tmp_path):
    """REFERRERS names every foreign key to audit(id) in the schema (else a purge would fail on it)."""
    import sqlite3

    with Store.open(tmp_path / "home") as s:
        path = s.path
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    pointing = {t for t in tables for fk in conn.execute(f'PRAGMA foreign_key_list("{t}")') if fk[2] == "audit"}
    conn.close()
    assert pointing == set(audit_chain.REFERRERS)


# --- tampering after a purge --------------------------------------------------------------------

@pytest.fixture
def purged(store, monkeypatch):
    write(store, monkeypatch, at=jst(2019, 4, 1), written=jst(2019, 4, 1), n=4, operation="old")
    write(store, monkeypatch, at=jst(2023, 4, 1), written=jst(2023, 4, 1), n=3, operation="young")
    officer_purge(store, dt.date(2021, 1, 1))
    assert store.verify_audit_chain() == (4, None)
    return store


def _sql(store, statement, *params):
    with store.transaction() as conn:
        conn.execute(statement, params)


def test_deleting_the_first_record_after_the_anchor_is_found(purged):
    _sql(purged, "DELETE FROM audit WHERE chain_seq = 5")
    checked, problem = purged.verify_audit_chain()
    assert problem is not None and "position 6, expected 5" in problem


def test_a_forged_anchor_is_found(purged):
    """Deleting more records and moving the anchor over them: the purge's own record disagrees."""
    _sql(purged, "DELETE FROM audit WHERE chain_seq = 5")
    last_hash = purged.conn.execute("SELECT row_hash FROM audit WHERE chain_seq = 5").fetchone()
    assert last_hash is None
    row5_hash = purged.conn.execute("SELECT prev_hash FROM audit WHERE chain_seq = 6").fetchone()[0]
    _sql(purged, "UPDATE audit_purges SET last_seq = 5, records = 5, last_hash = ?", row5_hash)
    checked, problem = purged.verify_audit_chain()
    assert problem is not None and "names another anchor" in problem


def test_deleting_the_history_is_found(purged):
    _sql(purged, "DELETE FROM audit_purges")
    checked, problem = purged.verify_audit_chain()
    assert problem is not None and "expected 1" in problem


def test_a_gap_in_the_history_is_found(purged):
    _sql(purged, "UPDATE audit_purges SET first_seq = 2, records = 3")
    checked, problem = purged.verify_audit_chain()
    assert problem is not None and "purges before it end at position 0" in problem


def _purger(location, results):
    with Store(location) as store:
        result = purge(store, actor="sato", terminal="t", at=NOW, before=dt.date(2020, 1, 1), now=NOW)
        results.put(result.records)


def test_two_purges_at_once_delete_each_record_once(store, monkeypatch):
    """Two officers purging at the same moment: the chain's lock makes them one after the other,
    so the records go once, the history has no overlap and the chain verifies."""
    import multiprocessing

    write(store, monkeypatch, at=jst(2018, 1, 1), written=jst(2018, 1, 1), n=50)
    location = store.path          # the SQLite file or the postgresql:// URL
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_purger, args=(location, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(results.get(timeout=5) for _ in procs) == [0, 0, 0, 50]
    assert [(h["first_seq"], h["last_seq"]) for h in store.audit_purges()] == [(1, 50)]
    assert store.verify_audit_chain() == (4, None)
