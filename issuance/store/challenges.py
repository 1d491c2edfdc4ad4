"""The centre's spent challenges in the store: what makes a challenge single use across the
centre's worker processes (issuance/kiosk/challenges.py, issuance/http/prefork.py).

One table, `centre_spent_challenges`: a row per challenge a kiosk has redeemed (the whole token,
hex) with the instant it expires (ms since the epoch, on the centre's clock). Redeeming is one
INSERT … ON CONFLICT DO NOTHING: the database's unique key decides, so of two workers redeeming
the same challenge at the same moment exactly one inserts the row (SQLite's single write lock,
PostgreSQL's unique index). Rows are dropped `KEEP_AFTER_EXPIRY` after their challenge expired:
by then a replay is refused as expired anyway (the token carries its expiry), and the margin
covers a clock stepped back by less than that.

Decision: the table is not one of the schema's migrations (schema.py) but is created, if missing,
by the serving parent before it forks (`prepare_challenge_table`): it holds only short-lived
runtime state (nothing in it matters an hour later, nothing else refers to it), so it does not
version the store's durable record.

Each redemption opens its own short connection (StoreSpentChallenges in database.py, like
StoreRevocationSource): the workers are
forked processes, and a connection must never cross a fork.
"""
from __future__ import annotations

import datetime as _dt

from mynaemu.issuance.store import postgres

TABLE = "centre_spent_challenges"
KEEP_AFTER_EXPIRY = _dt.timedelta(minutes=10)

# The table and its expiry index (INTEGER is BIGINT on PostgreSQL: postgres.ddl).
DDL = [
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        token TEXT PRIMARY KEY,
        expires_ms INTEGER NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expiry ON {TABLE} (expires_ms)",
]


def _ms(instant: _dt.datetime) -> int:
    return int(instant.timestamp() * 1000)


class ChallengesTable:
    """Table group `centre_spent_challenges` (composed into Store, database.py)."""

    def prepare_challenge_table(self) -> None:
        """Create the table if missing (the serving parent, before it forks its workers)."""
        with self.transaction() as conn:
            for statement in DDL:
                conn.execute(postgres.ddl(statement) if self.is_pg else statement)

    def spend_challenge(self, token: bytes, expires: _dt.datetime, now: _dt.datetime) -> bool:
        """Record `token` as used: True if this call is the first to spend it, else False. Drops
        the rows of challenges expired more than KEEP_AFTER_EXPIRY before `now`."""
        won = self.conn.execute(f"INSERT INTO {TABLE} (token, expires_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                (token.hex(), _ms(expires))).rowcount == 1
        self.conn.execute(f"DELETE FROM {TABLE} WHERE expires_ms < ?", (_ms(now - KEEP_AFTER_EXPIRY),))
        return won

    def spent_challenge_count(self) -> int:
        return self.conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]


__all__ = ["ChallengesTable", "DDL", "TABLE", "KEEP_AFTER_EXPIRY"]
