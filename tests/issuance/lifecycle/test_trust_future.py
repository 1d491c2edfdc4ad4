"""Trust boundaries, item 9: a mistyped future --at must not strand a card.

A state-changing `issue` step dated more than one day after the machine's clock is refused
(exit 2, one line naming the instant and --allow-future) and changes nothing; with
--allow-future it goes through; reads stay free at any instant."""
import datetime as dt
import json

from mynaemu.issuance.store import Store
from tests.support.cli import run_issue as run

PERSON = ["--name", "未来\u3000太郎", "--birth", "1990-04-02", "--sex", "1", "--address", "東京都清瀬市試験町１丁目"]
NOW = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).replace(microsecond=0)
SOON = (NOW - dt.timedelta(days=3)).isoformat()     # the card's life happens just before today


def dump(home):
    with Store.open(home) as store:
        out = {}
        for table in ("cards", "card_events", "certificates", "cert_events", "applications", "persons"):
            out[table] = [tuple(r) for r in store.conn.execute(f"SELECT * FROM {table}")]
        return out


def delivered(tmp_path):
    app_id = json.loads(run("apply", *PERSON, "--at", (NOW - dt.timedelta(days=5)).isoformat(), "--json").stdout)["id"]
    run("generate", app_id, "--at", (NOW - dt.timedelta(days=4)).isoformat())
    run("deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123", "--kenhojo-pin", "1234",
        "-o", str(tmp_path / "card.json"), "--at", SOON)
    return app_id


def test_a_suspension_dated_years_ahead_is_refused_and_changes_nothing(home, tmp_path):
    app_id = delivered(tmp_path)
    before = dump(home)
    future = (NOW + dt.timedelta(days=4 * 365)).replace(hour=9, minute=0, second=0)
    result = run("suspend", app_id, "--at", future.strftime("%Y-%m-%dT%H:%M"), code=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert future.strftime("%Y-%m-%dT%H:%M") in lines[0] and "--allow-future" in lines[0]
    assert dump(home) == before
    # the card still works today: suspend and resume now are possible
    run("suspend", app_id)
    run("resume", app_id)


def test_a_receive_dated_2045_is_refused(home):
    app_id = json.loads(run("apply", *PERSON, "--json").stdout)["id"]
    before = dump(home)
    result = run("receive", app_id, "--at", "2045-01-01", code=2)
    assert "2045-01-01" in result.stderr and "--allow-future" in result.stderr
    assert dump(home) == before
    run("receive", app_id)          # today still possible


def test_allow_future_lets_a_deliberately_future_step_through(home, tmp_path):
    app_id = delivered(tmp_path)
    future = (NOW + dt.timedelta(days=30)).isoformat()
    run("suspend", app_id, "--at", future, "--allow-future")
    with Store.open(home) as store:
        assert store.card(app_id)["state"] == "suspended"


def test_one_day_of_slack_and_reads_at_any_instant(home, tmp_path):
    app_id = delivered(tmp_path)
    # within a day ahead (time zones, a clock a little behind): no option needed
    run("suspend", app_id, "--at", (NOW + dt.timedelta(hours=20)).isoformat())
    # reads are free at any instant
    doc = json.loads(run("status", app_id, "--at", "2045-01-01", "--json").stdout)
    assert doc["id"] == app_id
    run("audit", app_id, "--at", "2045-01-01")
    run("crl", "--ca", "auth", "--at", "2040-01-01", "--json")
    # a state-changing step with --at in the past is unaffected
    run("resume", app_id, "--at", (NOW + dt.timedelta(hours=21)).isoformat())


def test_generate_batch_mode_is_checked_too(home):
    json.loads(run("apply", *PERSON, "--json").stdout)
    result = run("generate", "--workers", "1", "--at", "2031-01-01", code=2)
    assert "--allow-future" in result.stderr
