"""The audit trail's hash chain (SEC-8): sealed at commit, one chain per store on SQLite and
PostgreSQL, and `verify_audit_chain` / `issue audit --verify` name the first record that does
not match after an edit, a deletion (middle or tail), an insertion or a reordering."""
from __future__ import annotations

import datetime as dt
import multiprocessing
import sqlite3

import pytest

from mynaemu.issuance.store import DB_NAME, Store
from tests.support.cli import run_issue
from tests.support.pg import fresh_pg_url

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)


def _append(store, n, who="op-a"):
    for i in range(n):
        store.audit(at=T0 + dt.timedelta(minutes=i), operator=who, terminal="t1", operation="status",
                    target=f"T{i}", outcome="ok", detail={"i": i})


@pytest.fixture
def sqlite_store(tmp_path):
    with Store.open(tmp_path / "s") as store:
        yield store


def _raw(store):
    conn = sqlite3.connect(store.path)
    conn.row_factory = sqlite3.Row
    return conn


def test_records_are_sealed_in_one_chain_at_commit(sqlite_store):
    _append(sqlite_store, 5)
    with sqlite_store.transaction():   # a step: record first, target and detail named later
        audit_id = sqlite_store.audit(at=T0, operator="op-b", terminal="t1", operation="apply", target=None,
                                      outcome="ok")
        sqlite_store.set_audit_target(audit_id, "NEWCARD")
        sqlite_store.set_audit_detail(audit_id, {"kind": "first"})
        assert sqlite_store.conn.execute("SELECT chain_seq FROM audit WHERE id = ?", (audit_id,)).fetchone()[0] is None
    rows = sqlite_store.conn.execute("SELECT chain_seq, prev_hash, row_hash FROM audit ORDER BY id").fetchall()
    assert [r[0] for r in rows] == list(range(1, 7))
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, 6)) and rows[0][1] == ""
    assert sqlite_store.verify_audit_chain() == (6, None)


@pytest.mark.parametrize("tamper,first_bad,says", [
    ("UPDATE audit SET operator = 'someone-else' WHERE id = 3", 3, "edited"),
    ("UPDATE audit SET detail = NULL WHERE id = 4", 4, "edited"),
    ("UPDATE audit SET outcome = 'refused' WHERE id = 1", 1, "edited"),
    ("DELETE FROM audit WHERE id = 3", 4, "deleted"),
    ("DELETE FROM audit WHERE id = 6", None, "deleted"),
    ("INSERT INTO audit (at, recorded_at, operator, terminal, operation, outcome) "
     "VALUES ('2026-05-01T00:00:00+00:00', 'x', 'intruder', 't', 'status', 'ok')", 7, "not in the chain"),
    ("UPDATE audit SET chain_seq = CASE id WHEN 2 THEN 3 WHEN 3 THEN 2 END WHERE id IN (2, 3)", 3, "reordered"),
])
def test_every_kind_of_tampering_is_named(sqlite_store, tamper, first_bad, says):
    _append(sqlite_store, 6)
    assert sqlite_store.verify_audit_chain() == (6, None)
    raw = _raw(sqlite_store)
    if "chain_seq = CASE" in tamper:   # the unique index would refuse the swap in one statement
        raw.execute("DROP INDEX audit_chain")
    raw.execute(tamper)
    raw.commit()
    raw.close()
    checked, problem = sqlite_store.verify_audit_chain()
    assert problem is not None and says in problem, problem
    if first_bad is not None:
        assert f"audit record {first_bad}" in problem


def _writer(path, who, n):
    with Store(path) as store:
        for i in range(n):
            store.audit(at=T0, operator=who, terminal="t", operation="status", target=str(i), outcome="ok")


def test_concurrent_writers_never_fork_the_chain_sqlite(tmp_path):
    Store.open(tmp_path / "s").close()
    path = tmp_path / "s" / DB_NAME
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, f"w{k}", 40)) for k in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(path) as store:
        assert store.verify_audit_chain() == (240, None)


def test_concurrent_writers_never_fork_the_chain_postgresql():
    with fresh_pg_url() as url:
        Store(url).close()
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_writer, args=(url, f"w{k}", 30)) for k in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(180)
            assert p.exitcode == 0
        with Store(url) as store:
            assert store.verify_audit_chain() == (180, None)
            store.conn.execute("UPDATE audit SET target = 'forged' WHERE chain_seq = 77")
            checked, problem = store.verify_audit_chain()
            assert checked == 76 and "edited" in problem


def test_issue_audit_verify_exit_codes(home):
    run_issue("apply", "--name", "見本　監査", "--birth", "1980-01-01", "--sex", "1",
              "--address", "東京都清瀬市監査町１", "--at", "2026-11-01")
    ok = run_issue("audit", "--verify", "--at", "2026-11-02")
    assert ok.stdout.startswith("audit trail intact:")
    conn = sqlite3.connect(home / DB_NAME)
    first = conn.execute("SELECT min(id) FROM audit").fetchone()[0]
    conn.execute("UPDATE audit SET reason = 'rewritten' WHERE id = ?", (first,))
    conn.commit()
    conn.close()
    broken = run_issue("audit", "--verify", "--at", "2026-11-02", code=1)
    lines = [line for line in broken.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"audit record {first}" in lines[0] and "edited" in lines[0]
