"""The store and the workflow on PostgreSQL: the same scenarios as on SQLite, plus what only a
server with many writers shows (row locks, lock timeouts, SKIP LOCKED claims, one schema shared).

The workflow scenarios are test_workflow.py's own tests, collected again here with its `store`
fixture replaced by a PostgreSQL store (a fresh schema of a private server per test, see
tools/harness/pgserver.py) and its `domain_dump` by a portable one (it reads SQLite's catalogue). The
store's own scenarios that do not read SQLite's catalogue run here through the same fixture.
"""
import datetime as dt
import multiprocessing
import threading

import pytest

psycopg = pytest.importorskip("psycopg")

from mynaemu.issuance.pki import revocation as rv  # noqa: E402
from mynaemu.issuance.store import (
    MIGRATIONS, SCHEMA_VERSION, Store, StoreBusy, StoreError, StoreRevocationSource, claim_owner_id,
)
from mynaemu.issuance.lifecycle.workflow import IllegalState, Workflow  # noqa: E402
from mynaemu.tools.harness import pgserver  # noqa: E402

from tests.issuance.store import test_store as sqlite_store_tests  # noqa: E402
from tests.issuance.lifecycle import test_workflow as workflow_tests  # noqa: E402

# test_workflow's scenarios, re-collected in this module (the fixtures below override its store)
from tests.issuance.lifecycle.test_workflow import *  # noqa: E402,F401,F403
from tests.issuance.lifecycle.test_workflow import HANAKO, PINS, issued, jst  # noqa: E402

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def pg_server():
    try:
        return pgserver.shared_server()
    except pgserver.PgServerError as exc:
        pytest.fail(f"PostgreSQL for the tests: {exc}")


@pytest.fixture
def pg_url(pg_server):
    url = pgserver.fresh_schema_url(pg_server.url)
    yield url
    pgserver.drop_schema(url)


@pytest.fixture
def store(pg_url):
    with Store(pg_url) as s:
        yield s


def pg_domain_dump(store):
    """Every table except the audit, rows sorted (PostgreSQL has no rowid order)."""
    out = {}
    tables = [r[0] for r in store.conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_name NOT LIKE 'audit%'")]
    for table in sorted(tables):
        out[table] = sorted((tuple(r) for r in store.conn.execute(f"SELECT * FROM {table}")), key=repr)
    return out


@pytest.fixture(autouse=True)
def _portable_dump(monkeypatch):
    monkeypatch.setattr(workflow_tests, "domain_dump", pg_domain_dump)


# --- the store's own scenarios ---------------------------------------------------------------

def test_schema_is_versioned_and_reopening_is_idempotent(store, pg_url):
    assert store.backend == "postgresql" and store.schema_version() == SCHEMA_VERSION
    secret = store.setting("numbering_secret")
    with Store(pg_url) as again:
        assert again.setting("numbering_secret") == secret
        assert [r[0] for r in again.conn.execute("SELECT version FROM schema_version ORDER BY 1")] == \
            [m[0] for m in MIGRATIONS]
    # the password never shows in what the store prints
    assert pgserver.shared_server().password not in store.where


def test_the_shared_columns_have_postgresql_types(store):
    types = dict(store.conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'certificates'").fetchall())
    assert types["serial"] == "bigint" and types["der"] == "bytea" and types["id"] == "bigint"


def test_rule_set_is_chosen_once_per_deployment(pg_url):
    with Store(pg_url, rule_set="seed-2013") as s:
        assert s.rules.name == "seed-2013"
    with pytest.raises(StoreError, match="uses rule set 'seed-2013'"):
        Store(pg_url, rule_set="current")


def test_newer_schema_is_refused(store, pg_url):
    with store.transaction() as c:
        c.execute("INSERT INTO schema_version VALUES (?, 'future', 'x')", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this build"):
        Store(pg_url)


def test_bad_urls_and_dead_servers_are_one_line_errors(pg_server):
    with pytest.raises(StoreError, match="must start with postgresql://"):
        Store.open(db="mysql://x")
    port = pgserver._free_port()
    with pytest.raises(StoreError, match=r"postgresql://u:\*\*\*@127.0.0.1:\d+/x: cannot connect"):
        Store(f"postgresql://u:secret@127.0.0.1:{port}/x")


def test_open_picks_the_backend(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("MYNAEMU_DB", pg_url)
    with Store.open() as s:
        assert s.backend == "postgresql"
    with Store.open(tmp_path) as s:          # an explicit home is SQLite, whatever the environment
        assert s.backend == "sqlite"


test_transaction_rolls_back_on_error = sqlite_store_tests.test_transaction_rolls_back_on_error
test_audit_scrubs_numbers_and_requires_operator_and_terminal = \
    sqlite_store_tests.test_audit_scrubs_numbers_and_requires_operator_and_terminal


def test_numbers_are_valid_unique_and_keep_their_history(store):
    pid = sqlite_store_tests.add_person(store)
    first = store.individual_number(pid)
    with store.transaction():
        second = store.assign_individual_number(pid, at=T0 + dt.timedelta(days=1), reason="leak")
    assert second != first and [h["number"] for h in store.number_history(pid)] == [first, second]
    with pytest.raises(store.IntegrityError):   # NUM-7: a number is never given out twice
        with store.transaction() as c:
            c.execute("INSERT INTO individual_numbers (person_id, number, attempt, valid_from) VALUES (?, ?, 9, 'x')",
                      (pid, first))


def test_store_answers_as_of_an_instant(store):
    with store.transaction() as c:
        c.execute("INSERT INTO persons (juminhyo_code, name, birth, sex, address, municipality_code,"
                  " prefecture_romaji, city_romaji, created_at, updated_at) VALUES"
                  " ('11111111111', 'n', '1980-01-01', '1', 'a', '13221', 'p', 'c', 'x', 'x')")
        pid = c.execute("SELECT id FROM persons").fetchone()[0]
        c.execute("INSERT INTO applications VALUES ('0000000000000000', ?, 'first', NULL, 0, 1, 'x', NULL)", (pid,))
        serial = 0x4000000000000001
        cid = c.execute("INSERT INTO certificates (application_id, ca_kind, serial, issue_id, not_before, not_after,"
                        " der, status) VALUES ('0000000000000000', 'auth', ?, 'ID', ?, ?, ?, 'good')",
                        (serial, "2026-05-01T00:00:00+00:00", "2031-01-15T14:59:59+00:00", b"\x00")).lastrowid
        store.cert_event(cid, "issued", at=T0, reason=None, audit_id=None)
    day = dt.timedelta(days=1)
    with store.transaction():
        store.cert_event(cid, "hold", at=T0 + 10 * day, reason="certificateHold", audit_id=None)
        store.cert_event(cid, "revoked", at=T0 + 20 * day, reason="superseded", audit_id=None)
    assert store.certificate_by_serial("auth", serial)["der"] == b"\x00"      # BYTEA round trip
    assert store.certificate_status("auth", serial, T0 - day).status == "unknown"
    assert store.certificate_status("auth", serial, T0 + 11 * day).status == "hold"
    source = StoreRevocationSource(store.path)   # the URL: one short connection per question
    assert source.certificate_status("auth", serial, T0 + 21 * day).status == "revoked"
    assert [e.serial for e in source.revoked_certificates("auth", T0 + 30 * day)] == [serial]
    assert isinstance(store, rv.RevocationSource)


# --- concurrency ------------------------------------------------------------------------------

def _counter_writer(url, n, tag):
    with Store(url) as s:
        for _ in range(n):
            with s.transaction() as c:
                s.lock_name("counter")   # PostgreSQL's equivalent of BEGIN IMMEDIATE for a settings row
                value = int(c.execute("SELECT value FROM settings WHERE key = 'counter'").fetchone()[0])
                c.execute("UPDATE settings SET value = ? WHERE key = 'counter'", (str(value + 1),))
                s.audit(at=T0, operator=tag, terminal="t", operation="count", target=None, outcome="ok")


def test_processes_serialise_a_read_modify_write(store, pg_url):
    with store.transaction() as c:
        c.execute("INSERT INTO settings VALUES ('counter', '0')")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_counter_writer, args=(pg_url, 40, f"p{i}")) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert store.setting("counter") == "120" and len(store.audit_rows()) == 120


def test_crl_numbers_rise_under_concurrent_bumps(store, pg_url):
    seen = []

    def bump():
        with Store(pg_url) as s:
            seen.extend(s.bump_setting("crl_number_auth") for _ in range(10))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 41))


def test_a_held_card_lock_gives_store_busy_after_the_timeout(wf, store, pg_url):
    app_id, _ = issued(wf)
    with Store(pg_url, busy_timeout=0.3) as other:
        other_wf = Workflow(other, pki=wf.pki, operator="op-2", terminal="t-2", key_factory=wf.key_factory)
        with store.transaction():
            store.lock_card(app_id)
            with pytest.raises(StoreBusy, match="busy"):
                other_wf.suspend(app_id, at=jst(2017, 1, 1))
        other_wf.suspend(app_id, at=jst(2017, 1, 1))        # free again
    assert store.card(app_id)["state"] == "suspended"


def test_concurrent_suspends_of_one_card_lose_nothing(wf, store, pg_url):
    """Two counters suspend the same card at once: one wins, the other is refused naming the
    state it found: the row lock serialises them (without it both would read 'active')."""
    app_id, _ = issued(wf)
    results = []

    def suspend(tag):
        with Store(pg_url) as s:
            w = Workflow(s, pki=wf.pki, operator=tag, terminal=tag, key_factory=wf.key_factory)
            barrier.wait()
            try:
                results.append(("ok", w.suspend(app_id, at=jst(2017, 1, 1))))
            except IllegalState as exc:
                results.append(("refused", str(exc)))

    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=suspend, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r[0] for r in results) == ["ok", "refused", "refused", "refused"]
    assert all("is suspended (一時停止)" in r[1] for r in results if r[0] == "refused")
    events = [(e["from_state"], e["to_state"]) for e in store.card_events(app_id)]
    assert events[-1] == ("active", "suspended") and events.count(("active", "suspended")) == 1
    holds = [e for c in store.certificates_of(app_id) for e in store.cert_events(c["id"]) if e["event"] == "hold"]
    assert len(holds) == 2                      # auth + sign, once each


def test_claims_skip_locked_rows_and_survive_their_owner(wf, store, pg_url):
    ids = [wf.apply(at=jst(2016, 5, 1), **{**HANAKO, "name": f"請求\u3000{i}"}) for i in range(3)]
    started = "2000-01-01T00:00:00.000000Z"
    with Store(pg_url) as other:
        # a claim in flight (row locked, not yet committed) is skipped, not waited for
        with store.transaction() as c:
            c.execute("SELECT 1 FROM cards WHERE application_id = ? FOR UPDATE", (ids[0],))
            assert other.claim_next("w/2/x", lease_s=60, batch_started=started) == ids[1]
        assert other.claim_next("w/3/x", lease_s=60, batch_started=started) == ids[0]
        # a claim whose lease ran out is free again; one of a dead process of this host at once
        with other.transaction() as c:
            c.execute("UPDATE cards SET claim_until = '2000-01-01T00:00:00.000000Z' WHERE application_id = ?", (ids[1],))
        assert other.claim_next("w/4/x", lease_s=60, batch_started=started) == ids[1]
        dead = claim_owner_id().rsplit("/", 2)[0] + "/999999999/x"
        with other.transaction() as c:
            c.execute("UPDATE cards SET claim_owner = ? WHERE application_id = ?", (dead, ids[2]))
        assert other.claim_next("w/5/x", lease_s=60, batch_started=started) is None
        assert other.release_dead_claims() == [ids[2]]
        assert other.claim_next("w/5/x", lease_s=60, batch_started=started) == ids[2]


def test_illegal_steps_are_one_line_naming_the_state(wf):
    app_id = wf.apply(at=jst(2016, 5, 1), **HANAKO)
    with pytest.raises(IllegalState) as info:
        wf.deliver(app_id, at=jst(2016, 5, 2), pins=PINS, identity_check="x")
    assert "\n" not in str(info.value) and "is applied (申請)" in str(info.value)


def test_the_reused_workflow_scenarios_run_on_postgresql(wf):
    # every test_workflow scenario collected above gets this wf, over the PostgreSQL store
    assert wf.store.backend == "postgresql"


def test_a_v1_sqlite_store_is_migrated_in_place(tmp_path):
    """Schema v2 (card order, claims, indexes) applies to an existing SQLite store: its cards keep
    their creation order and new cards follow."""
    import sqlite3

    from mynaemu.issuance import store as st

    raw = sqlite3.connect(tmp_path / st.DB_NAME)
    raw.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                "applied_at TEXT NOT NULL)")
    for statement in MIGRATIONS[0][2]:
        raw.execute(statement)
    raw.execute("INSERT INTO schema_version VALUES (1, 'v1', 'x')")
    raw.execute("INSERT INTO settings VALUES ('rule_set', 'current'), ('numbering_secret', '00'), ('created_at', 'x')")
    raw.execute("INSERT INTO persons (juminhyo_code, name, birth, sex, address, municipality_code, prefecture_romaji,"
                " city_romaji, created_at, updated_at) VALUES ('11111111111', 'n', '1980-01-01', '1', 'a', '13221',"
                " 'p', 'c', 'x', 'x')")
    for app_id in ("B" * 16, "A" * 16):
        raw.execute("INSERT INTO applications VALUES (?, 1, 'first', NULL, 0, 1, 'x', NULL)", (app_id,))
        raw.execute("INSERT INTO cards (application_id, person_id, state, last_change_at) VALUES (?, 1, 'applied', 'x')",
                    (app_id,))
    raw.commit()
    raw.close()
    with Store.open(tmp_path) as s:
        assert s.schema_version() == SCHEMA_VERSION >= 2  # v3 (cardwrite custody) came later
        with s.transaction() as c:
            c.execute("INSERT INTO applications VALUES (?, 1, 'first', NULL, 0, 1, 'x', NULL)", ("C" * 16,))
            c.execute("INSERT INTO cards (application_id, person_id, state, last_change_at) VALUES (?, 1, 'applied', 'x')",
                      ("C" * 16,))
        assert s.application_ids() == ["B" * 16, "A" * 16, "C" * 16]
        assert s.claim_next("h/1/x", lease_s=5, batch_started=st.lease_stamp()) == "B" * 16


def test_the_issue_cli_runs_on_postgresql_with_db(pg_url, tmp_path, monkeypatch, issue_staff):
    import json

    from click.testing import CliRunner

    from mynaemu.issuance.pki.ca import default_test_pki
    from mynaemu.tools.cli import main

    monkeypatch.setenv("MYNAEMU_HOME", str(tmp_path / "home"))    # --db wins over the home's SQLite file
    monkeypatch.delenv("MYNAEMU_DB", raising=False)
    default_test_pki()
    issue_staff(db=pg_url)  # every issue command authenticates (issue 13)

    def run(*args, code=0):
        result = CliRunner().invoke(main, ["issue", "--db", pg_url, *args], catch_exceptions=False)
        assert result.exit_code == code, (args, result.output)
        return result

    app_id = json.loads(run("apply", "--name", "番号\u3000次郎", "--birth", "1990-04-02", "--sex", "1",
                            "--address", "東京都清瀬市試験町", "--at", "2026-05-01", "--json").stdout)["id"]
    gen = json.loads(run("generate", "--workers", "1", "--at", "2026-05-02T10:00", "--json").stdout)
    assert [g["id"] for g in gen["generated"]] == [app_id]
    run("deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123", "--kenhojo-pin", "1234",
        "-o", str(tmp_path / "card.json"), "--at", "2026-05-10")
    run("suspend", app_id, "--at", "2026-05-11")
    refused = run("suspend", app_id, "--at", "2026-05-12", code=1)
    assert refused.stderr.strip() == (f"mynaemu issue: suspend refused: card {app_id} is suspended (一時停止); "
                                      "suspend needs active")
    crl = json.loads(run("crl", "--ca", "auth", "--at", "2026-05-12", "--json").stdout)
    assert len(crl["entries"]) == 1 and crl["entries"][0]["reason"] == "certificateHold"
    assert not (tmp_path / "home" / "issuance.sqlite3").exists()
    bad = CliRunner().invoke(main, ["issue", "--db", "sqlite:///x", "audit"])
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("mynaemu issue: --db must be a postgresql:// URL")
    assert "secret" not in CliRunner().invoke(
        main, ["issue", "--db", "postgresql://u:secret@127.0.0.1:1/x", "audit"]).stderr


def test_the_kiosk_answers_from_a_postgresql_store(pg_url, tmp_path, monkeypatch, issue_staff):
    """kiosk issue / enrol with --db: the centre, the OCSP responder and the municipality read
    the PostgreSQL store; the home folder keeps only the kiosk's keys."""
    import json

    from click.testing import CliRunner

    from mynaemu.card.image import CardImage
    from mynaemu.issuance.pki.ca import default_test_pki
    from mynaemu.tools.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("MYNAEMU_HOME", str(home))
    monkeypatch.delenv("MYNAEMU_DB", raising=False)
    default_test_pki()
    card = tmp_path / "card.json"
    issue_staff(db=pg_url)  # every issue command authenticates (issue 13)

    def run(*args, code=0):
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, (args, result.output)
        return result

    def kiosk(out, *extra, code=0, pin="1234", document="juminhyo"):
        return run("kiosk", "issue", "--db", pg_url, "--card", str(card), "--pin", pin, "--document", document,
                   "-o", str(tmp_path / out), "--at", "2026-05-12T12:00:00+09:00", *extra, code=code)

    app_id = json.loads(run("issue", "--db", pg_url, "apply", "--name", "番号\u3000三郎", "--birth", "1985-07-07",
                            "--sex", "1", "--address", "東京都清瀬市試験町", "--at", "2026-05-01",
                            "--json").stdout)["id"]
    run("issue", "--db", pg_url, "generate", "--workers", "1", "--at", "2026-05-02T10:00")
    run("issue", "--db", pg_url, "deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123",
        "--kenhojo-pin", "1234", "-o", str(card), "--at", "2026-05-10")

    doc = json.loads(kiosk("a.pdf", "--json").stdout.strip().splitlines()[-1])
    assert doc["status"] == "issued" and {"check": "validity", "result": "good", "source": "ocsp"} in doc["checks"]
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF-")

    # a hold placed in the PostgreSQL store reaches the kiosk at once; the PIN is not spent
    run("issue", "--db", pg_url, "suspend", app_id, "--at", "2026-05-11")
    held = kiosk("h.pdf", "--json", code=5)
    assert json.loads(held.stdout.splitlines()[0])["reason"] == "cert-hold"
    assert CardImage.load(card).pin("jpki", 0x0018).remaining == 3
    run("issue", "--db", pg_url, "resume", app_id, "--at", "2026-05-11T12:00")

    # 現行方式: the 利用者ID comes from the municipality reading the PostgreSQL store
    run("kiosk", "enrol", "--db", pg_url, "--card", str(card), "--pin-zei", "4321")
    assert "SELECT 条例利用AP" in kiosk("z.pdf", "--method", "genko", pin="4321", document="zei").output

    assert not (home / "issuance.sqlite3").exists()
    rest = ["--card", str(card), "--pin", "1234", "--document", "zei", "-o", str(tmp_path / "x.pdf")]
    bad = CliRunner().invoke(main, ["kiosk", "issue", "--db", "sqlite:///x", *rest])
    assert bad.exit_code == 2 and "must be a postgresql:// URL" in bad.output
    dead = CliRunner().invoke(main, ["kiosk", "issue", "--db", "postgresql://u:secret@127.0.0.1:1/x", *rest])
    assert dead.exit_code == 1, dead.output
    assert "secret" not in dead.output and len(dead.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.pdf").exists()
