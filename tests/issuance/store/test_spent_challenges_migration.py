"""The centre's spent challenges are schema v8: a new store has the table from its first open,
and a store whose serving parent made the table before v8 (the old way) migrates cleanly, keeping
what it holds."""
from __future__ import annotations

import datetime as dt
import sqlite3

from mynaemu.issuance.store import DB_NAME, SCHEMA_VERSION, Store, StoreSpentChallenges

UTC = dt.timezone.utc


def test_a_new_store_has_the_spent_set(tmp_path):
    Store.open(tmp_path).close()
    now = dt.datetime(2026, 6, 1, 10, tzinfo=UTC)
    spent = StoreSpentChallenges(tmp_path / DB_NAME)
    assert spent.spend(b"t" * 32, now + dt.timedelta(minutes=1), now)
    assert not spent.spend(b"t" * 32, now + dt.timedelta(minutes=1), now)


def test_a_v7_store_whose_parent_made_the_table_migrates(tmp_path):
    Store.open(tmp_path).close()
    now = dt.datetime(2026, 6, 1, 10, tzinfo=UTC)
    StoreSpentChallenges(tmp_path / DB_NAME).spend(b"k" * 32, now + dt.timedelta(minutes=1), now)
    conn = sqlite3.connect(tmp_path / DB_NAME)
    with conn:                           # as a v7 store that served once: the table, but no v8
        conn.execute("DELETE FROM schema_version WHERE version = 8")
    conn.close()
    with Store.open(tmp_path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 8
        assert store.spent_challenge_count() == 1
    assert not StoreSpentChallenges(tmp_path / DB_NAME).spend(b"k" * 32, now + dt.timedelta(minutes=1), now)
