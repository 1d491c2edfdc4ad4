"""Two (or more) `issue init` at once make exactly one first officer (issue 13, SEC-4, SEC-6).

`init` is the one command that needs no account, so it is the one a race could abuse: two
processes that both see a store without staff must not both make an officer. Accounts.init_officer
checks and inserts in one transaction under the staff table's lock (BEGIN IMMEDIATE on SQLite, a
row lock on PostgreSQL). Both are driven here: processes forked to meet at a barrier just before
the transaction, and the real command line started several times at once on a store that does not
exist yet (so the store's creation and migrations race too)."""
from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import subprocess
import sys


from mynaemu.issuance.clock import JST
from mynaemu.issuance.staff.accounts import Accounts, StaffRefused
from mynaemu.issuance.store import Store
from tests.support import REPO
from tests.support.staff import CHEAP
from tests.support.pg import fresh_pg_url

RACERS = 6
AT = dt.datetime(2026, 10, 1, 9, 0, tzinfo=JST)


def _racer(location, officer, barrier, results):
    try:
        with Store(location) as store:
            accounts = Accounts(store, terminal="race", hasher=CHEAP)
            barrier.wait(timeout=60)
            try:
                accounts.init_officer(officer, at=AT, password=f"Initial-passw0rd-{officer}")
                results.put((officer, "made"))
            except StaffRefused as exc:
                results.put((officer, f"refused: {exc}"))
    except Exception as exc:  # noqa: BLE001 — reported to the parent, which fails the test
        results.put((officer, f"error: {type(exc).__name__}: {exc}"))


def _race(location) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(location, f"officer-{k}", barrier, results)) for k in range(RACERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return sorted(results.get(timeout=5) for _ in procs)


def _staff_and_init_records(location):
    with Store(location) as store:
        staff = [tuple(r) for r in store.conn.execute("SELECT id FROM staff ORDER BY id").fetchall()]
        rights = [tuple(r) for r in store.conn.execute("SELECT staff_id, right_name FROM staff_rights").fetchall()]
        inits = store.conn.execute("SELECT operator, outcome FROM audit WHERE operation = 'init'").fetchall()
        checked, problem = store.verify_audit_chain()
    return staff, rights, [tuple(r) for r in inits], problem


def _check(outcomes, location):
    made = [who for who, what in outcomes if what == "made"]
    others = [what for who, what in outcomes if what != "made"]
    assert len(made) == 1, outcomes
    assert all(what.startswith("refused: this store already has staff") for what in others), outcomes
    staff, rights, inits, problem = _staff_and_init_records(location)
    assert staff == [(made[0],)]
    assert rights == [(made[0], "officer")]
    assert inits == [(made[0], "ok")]
    assert problem is None


def test_forked_inits_at_a_barrier_make_one_officer_sqlite(tmp_path):
    home = tmp_path / "home"
    with Store.open(home) as store:
        location = store.path
    _check(_race(location), location)


def test_forked_inits_at_a_barrier_make_one_officer_postgresql():
    with fresh_pg_url() as url:
        Store(url).close()
        _check(_race(url), url)


def test_the_command_line_started_at_once_on_a_new_store(tmp_path):
    """`mynaemu issue init` RACERS times at once on a home that does not exist yet: one exit 0
    printing its password, the others exit 1 with one line; one officer in the store."""
    home = tmp_path / "fresh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYNAEMU_")}
    env["MYNAEMU_HOME"] = str(home)
    procs = [subprocess.Popen([sys.executable, "-m", "mynaemu", "issue", "init", "--officer", f"first-{k}",
                               "--at", "2026-10-01", "--json"],
                              cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(RACERS)]
    done = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    winners = [(code, out) for code, out, err in done if code == 0]
    losers = [(code, err) for code, out, err in done if code != 0]
    assert len(winners) == 1, done
    assert all(code == 1 and err.count("\n") == 1 and "already has staff" in err for code, err in losers), losers
    with Store.open(home) as store:
        location = store.path
    staff, rights, inits, problem = _staff_and_init_records(location)
    assert len(staff) == 1 and rights == [(staff[0][0], "officer")] and problem is None
    assert f'"id": "{staff[0][0]}"' in winners[0][1]
