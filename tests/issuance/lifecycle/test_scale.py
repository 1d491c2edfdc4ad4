"""The store under concurrency, CI-sized: many writer processes on shared cards lose no update
and reach no illegal state, and a batch killed with kill -9 resumes without duplicates.

The long run is `python -m bench.bench_store_scale --writers 16 --ops 10000` (same code, bigger).
"""
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from tests.support import REPO

import pytest

psycopg = pytest.importorskip("psycopg")

from bench import bench_store_scale as scale  # noqa: E402
from mynaemu.issuance.lifecycle.batch import run_batch, work  # noqa: E402
from mynaemu.issuance.personalise import KEYS_PER_CARD  # noqa: E402
from mynaemu.issuance.store import DB_NAME, QUEUE_STATES, Store, claim_owner_id, lease_stamp  # noqa: E402
from mynaemu.issuance.lifecycle.workflow import Workflow  # noqa: E402
from mynaemu.tools.harness import pgserver  # noqa: E402

ROOT = REPO
JST = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture(scope="module")
def pg_server():
    try:
        return pgserver.shared_server()
    except pgserver.PgServerError as exc:
        pytest.fail(f"PostgreSQL for the tests: {exc}")


@pytest.fixture(scope="module")
def key_pool():
    return scale.make_key_pool(12)


@pytest.fixture
def location(request, pg_server, tmp_path):
    if request.param == "postgresql":
        url = pgserver.fresh_schema_url(pg_server.url)
        yield url
        pgserver.drop_schema(url)
    else:
        yield tmp_path / DB_NAME


def _assert_clean(result):
    counts = result["counts"]
    assert result["anomalies"] == [], result["anomalies"][:20]
    # the mix really ran: both outcomes of the contended steps, and whole reissue chains
    for op in ("suspend", "resume"):
        assert counts.get(f"{op}/ok", 0) > 0 and counts.get(f"{op}/refused", 0) > 0, counts
    assert counts.get("move/ok", 0) > 0 and counts.get("deliver/ok", 0) > 0, counts
    assert not any(k.endswith(("/busy", "/exception")) for k in counts), counts


@pytest.mark.parametrize("location", ["postgresql"], indirect=True)
def test_16_writers_on_shared_cards_lose_no_update_and_reach_no_illegal_state(location, key_pool):
    result = scale.run_scale(location, writers=16, ops=200, persons=24, seed=5, key_pool=key_pool)
    _assert_clean(result)
    assert result["operations"] >= 16 * 200


@pytest.mark.parametrize("location", ["sqlite"], indirect=True)
def test_sqlite_writers_serialise_too(location, key_pool):
    result = scale.run_scale(location, writers=6, ops=120, persons=12, seed=6, key_pool=key_pool)
    _assert_clean(result)


def test_the_checks_see_a_lost_update(tmp_path, key_pool):
    """verify() is not vacuous: a suspension recorded over an already suspended card (what two
    writers reading 'active' at once would leave) is reported."""
    location = tmp_path / DB_NAME
    persons = scale.setup_cards(location, 1, key_pool)
    with Store(location) as store:
        app_id = store.application_ids()[0]
        wf = Workflow(store, operator="writer-0", terminal="t", key_factory=scale.pool_factory(key_pool))
        wf.suspend(app_id, at=scale.OPS_AT)
        with store.transaction():   # the second, lost-update suspension
            audit = store.audit(at=scale.OPS_AT, operator="writer-1", terminal="t", operation="suspend",
                                target=app_id, outcome="ok")
            store.set_card_state(app_id, "suspended", at=scale.OPS_AT, operation="suspend", audit_id=audit)
    problems = scale.verify(location, {("suspend", "ok"): 2})
    assert any("suspend" in p and "transitions [('suspended', 'suspended')], expected [('active', 'suspended')]"
               in p for p in problems), problems
    assert any("illegal transition suspended→suspended" in p for p in problems), problems
    assert persons


# --- batch issuance: kill -9, resume, no duplicates ----------------------------------------------

def _cli(location, home, *args):
    db = ["--db", str(location)] if isinstance(location, str) else []
    return [sys.executable, "-m", "mynaemu.tools.cli", "issue", "--home", str(home), *db, *args]


def _poll(location):
    with Store(location) as store:
        done = len(store.application_ids(("awaiting_delivery",)))
        claimed = [c for c in store.claims() if c["state"] in QUEUE_STATES]
    return done, claimed


@pytest.mark.parametrize("location", ["postgresql", "sqlite"], indirect=True)
def test_kill_9_during_a_two_worker_batch_then_resume_gives_no_duplicates(location, tmp_path, issue_staff):
    cards = 10
    home = tmp_path / "home" if isinstance(location, str) else location.parent   # SQLite: the store's own home
    ids = scale.prepare_applications(location, cards)
    issue_staff(db=location) if isinstance(location, str) else issue_staff(home)  # issue 13: staff log in
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MYNAEMU_DB", None)
    batch = subprocess.Popen(_cli(location, home, "generate", "--workers", "2", "--at", "2026-04-10T10:00",
                                  "--json"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:   # kill when some cards are done and a worker holds a claim mid-card
            done, claimed = _poll(location)
            if done >= 2 and claimed:
                break
            assert batch.poll() is None, "the batch ended before it could be killed; make it longer"
            assert time.monotonic() < deadline, "the batch made no progress"
            time.sleep(0.05)
        os.killpg(batch.pid, signal.SIGKILL)     # the CLI and both workers, mid-batch
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
        batch.communicate(timeout=30)
    done_at_kill, claimed_at_kill = _poll(location)
    assert done_at_kill < cards and claimed_at_kill, "nothing was left in flight"

    resumed = subprocess.run(_cli(location, home, "generate", "--workers", "2", "--at", "2026-04-10T10:00", "--json"),
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    # the dead workers' claims were freed at once (their PIDs are gone), not after the lease
    assert set(doc["reclaimed"]) >= {c["application_id"] for c in claimed_at_kill}
    assert doc["failed"] == [] and len(doc["generated"]) == cards - done_at_kill

    with Store(location) as store:
        q = lambda sql: store.conn.execute(sql).fetchall()  # noqa: E731
        assert sorted(store.application_ids(("awaiting_delivery",))) == sorted(ids)
        assert store.claims() == []
        # exactly one generation per card: one auth and one sign certificate, one 交付通知書,
        # one 'generate' transition and one successful generate audit record each
        assert q("SELECT application_id, ca_kind, count(*) FROM certificates GROUP BY application_id, ca_kind "
                 "HAVING count(*) <> 1") == []
        assert q("SELECT count(*) FROM certificates")[0][0] == 2 * cards
        assert tuple(q("SELECT count(DISTINCT notice_id), count(DISTINCT serial) FROM cards")[0]) == (cards, cards)
        assert q("SELECT application_id FROM card_events WHERE operation = 'generate' GROUP BY application_id "
                 "HAVING count(*) <> 1") == []
        assert q("SELECT count(*) FROM audit WHERE operation = 'generate' AND outcome = 'ok'")[0][0] == cards
        assert q("SELECT count(*) FROM keys")[0][0] == KEYS_PER_CARD * cards


@pytest.mark.parametrize("location", ["postgresql"], indirect=True)
def test_a_lease_taken_over_never_generates_twice(location, key_pool):
    """A worker that outlived its lease finds the card done by the one that took it over."""
    (app_id,) = scale.prepare_applications(location, 1)
    at = dt.datetime(2026, 4, 10, 10, tzinfo=JST)
    with Store(location) as slow_store, Store(location) as fast_store:
        slow = claim_owner_id("slow")
        assert slow_store.claim_next(slow, lease_s=0.001, batch_started=lease_stamp()) == app_id
        time.sleep(0.01)   # the slow worker's lease runs out while it makes keys
        outcomes = []
        fast_wf = Workflow(fast_store, operator="fast", terminal="t", key_factory=scale.pool_factory(key_pool))
        work(fast_store, fast_wf, owner=claim_owner_id("fast"), batch_started=lease_stamp(), at=at, lease_s=60,
             emit=lambda kind, payload: outcomes.append(kind))
        assert outcomes == ["generated"]
        slow_wf = Workflow(slow_store, operator="slow", terminal="t", key_factory=scale.pool_factory(key_pool))
        from mynaemu.issuance.lifecycle.workflow import IllegalState

        with pytest.raises(IllegalState, match="is awaiting_delivery"):
            slow_wf.generate(app_id, at=at)
        assert len(fast_store.certificates_of(app_id)) == 2


@pytest.mark.parametrize("location", ["postgresql", "sqlite"], indirect=True)
def test_batch_workers_share_the_queue(location, key_pool):
    ids = scale.prepare_applications(location, 8)
    result = run_batch(location, workers=2, at=dt.datetime(2026, 4, 10, 10, tzinfo=JST), key_pool=key_pool)
    assert sorted(g["id"] for g in result.generated) == sorted(ids)
    assert result.failed == [] and result.worker_errors == []
    with pytest.raises(ValueError, match="workers"):
        run_batch(location, workers=0, at=dt.datetime(2026, 4, 10, tzinfo=JST))
