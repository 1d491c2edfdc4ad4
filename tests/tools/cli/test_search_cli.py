"""`mynaemu issue search` (SEC-15): at least two of name, birth, address; exact matches with their
cards and never a 個人番号; every search audited with its items, not their values."""
from __future__ import annotations

import json
import sqlite3

import pytest

from mynaemu.issuance.store import DB_NAME
from tests.support.cli import run_issue
from tests.support.store_rows import last_audit

NAME, BIRTH, ADDRESS = "見本　検索", "1988-08-08", "東京都清瀬市検索町１丁目"


@pytest.fixture
def office(home):
    """A store with two residents sharing a name (different birth dates), one with a card."""
    first = run_issue("apply", "--name", NAME, "--birth", BIRTH, "--sex", "2", "--address", ADDRESS,
                      "--at", "2026-11-01", "--json")
    run_issue("apply", "--name", NAME, "--birth", "1970-01-01", "--sex", "1", "--address", ADDRESS,
              "--at", "2026-11-01", "--json")
    return home, json.loads(first.stdout)["id"]


def _numbers(home) -> list[str]:
    conn = sqlite3.connect(home / DB_NAME)
    try:
        return [r[0] for r in conn.execute("SELECT number FROM individual_numbers")]
    finally:
        conn.close()


@pytest.mark.parametrize("items", [
    [], ["--name", NAME], ["--birth", BIRTH], ["--address", ADDRESS], ["--name", NAME, "--sex", "2"],
])
def test_fewer_than_two_items_is_exit_2_and_searches_nothing(office, items):
    home, _ = office
    before = last_audit(home)
    result = run_issue("search", *items, "--at", "2026-11-02", code=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SEC-15" in lines[0] and "at least two" in lines[0]
    after = last_audit(home)
    assert after["operation"] != "search" or after["outcome"] != "ok"
    assert after["id"] >= before["id"]


def test_two_items_find_exactly_the_matches_with_their_cards_and_no_number(office):
    home, app_id = office
    result = run_issue("search", "--name", NAME, "--birth", BIRTH, "--at", "2026-11-02", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [(p["name"], p["birth"], p["sex"]) for p in found] == [(NAME, BIRTH, "2")]
    assert [c["id"] for c in found[0]["cards"]] == [app_id]
    assert found[0]["cards"][0]["state"] == "applied"
    for number in _numbers(home):                 # SEC-1: no 個人番号, in any form
        assert number not in result.stdout and number[-4:] not in json.dumps(found[0]["cards"])
    assert "individual_number" not in result.stdout


def test_name_and_address_find_both_and_sex_narrows(office):
    home, _ = office
    both = json.loads(run_issue("search", "--name", NAME, "--address", ADDRESS, "--at", "2026-11-02",
                                "--json").stdout)
    assert sorted(p["birth"] for p in both) == ["1970-01-01", BIRTH]
    narrowed = json.loads(run_issue("search", "--name", NAME, "--address", ADDRESS, "--sex", "1",
                                    "--at", "2026-11-02", "--json").stdout)
    assert [p["birth"] for p in narrowed] == ["1970-01-01"]
    nobody = run_issue("search", "--name", NAME, "--birth", "2001-01-01", "--at", "2026-11-02")
    assert nobody.exit_code == 0 and nobody.stdout.strip() == "no resident matches"


def test_every_search_is_audited_with_its_items_not_their_values(office):
    home, _ = office
    result = run_issue("search", "--birth", BIRTH, "--address", ADDRESS, "--at", "2026-11-02")
    assert result.exit_code == 0, result.output
    record = last_audit(home)
    assert (record["operation"], record["outcome"]) == ("search", "ok")
    detail = json.loads(record["detail"])
    assert detail == {"items": ["birth", "address"], "matches": 1}
    assert ADDRESS not in (record["detail"] or "") and BIRTH not in (record["detail"] or "")
