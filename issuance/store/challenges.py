"""The centre's spent challenges in the store: what makes a challenge single use across the
centre's worker processes (issuance/kiosk/challenges.py, issuance/http/prefork.py).

One table, `centre_spent_challenges`: a row per challenge a kiosk has redeemed (the whole token,
hex) with the instant it expires (ms since the epoch, on the centre's clock). Redeeming is one
INSERT … ON CONFLICT DO NOTHING: the database's unique key decides, so of two workers redeeming
the same challenge at the same moment exactly one inserts the row (SQLite's single write lock,
PostgreSQL's unique index). Rows are dropped `KEEP_AFTER_EXPIRY` after their challenge expired:
by then a replay is refused as expired anyway (the token carries its expiry), and the margin
covers a clock stepped back by less than that.

The table is schema v8 (schema.py). Until then the serving parent created it before forking, if
missing; the migration creates it only where that has not happened (IF NOT EXISTS), so such a
store migrates like any other and the table is there for every worker from the first open.

Each redemption opens its own short connection (StoreSpentChallenges in database.py, like
StoreRevocationSource): the workers are
forked processes, and a connection must never cross a fork.
"""
from __future__ import annotations

import datetime as _dt

TABLE = "centre_spent_challenges"
KEEP_AFTER_EXPIRY = _dt.timedelta(minutes=10)

# The table and its expiry index (INTEGER is BIGINT on PostgreSQL: postgres.ddl): schema v8.
V8 = [
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        token TEXT PRIMARY KEY,
        expires_ms INTEGER NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expiry ON {TABLE} (expires_ms)",
]


def _ms(instant: _dt.datetime) -> int:
    return int(instant.timestamp() * 1000)


class ChallengesTable:
    """Table group `centre_spent_challenges` (composed into Store, database.py)."""

    def spend_challenge(self, token: bytes, expires: _dt.datetime, now: _dt.datetime) -> bool:
        """Record `token` as used: True if this call is the first to spend it, else False. Drops
        the rows of challenges expired more than KEEP_AFTER_EXPIRY before `now`."""
        won = self.conn.execute(f"INSERT INTO {TABLE} (token, expires_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                (token.hex(), _ms(expires))).rowcount == 1
        self.conn.execute(f"DELETE FROM {TABLE} WHERE expires_ms < ?", (_ms(now - KEEP_AFTER_EXPIRY),))
        return won

    def spent_challenge_count(self) -> int:
        return self.conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]


__all__ = ["ChallengesTable", "V8", "TABLE", "KEEP_AFTER_EXPIRY"]
