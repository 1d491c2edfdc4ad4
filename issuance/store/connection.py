"""The store's connection: either backend opened, the schema brought up to date, transactions, locks, settings."""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import secrets
import sqlite3
import threading
from pathlib import Path

from mynaemu.issuance import policy
from mynaemu.issuance.store import postgres as pg
from mynaemu.issuance.store import sqlite as sqlite_backend
from mynaemu.issuance.store.errors import StoreBusy, StoreConflict, StoreError
from mynaemu.issuance.store.schema import MIGRATIONS, SCHEMA_VERSION
from mynaemu.issuance.store.values import default_home, iso

DB_NAME = "issuance.sqlite3"
BUSY_TIMEOUT_S = 30.0


def store_location(home, db: str | None = None):
    """Where the store is: the PostgreSQL URL `db` when given (StoreError if it is not one), else
    the SQLite file under `home`. One answer for the issue CLI, the kiosk and the centre."""
    if db is not None:
        if not pg.is_url(db):
            raise StoreError(f"database URL must start with postgresql:// (got {pg.redact_url(str(db))!r})")
        return db
    return Path(home) / DB_NAME


class Connection:
    """The store over SQLite or PostgreSQL. Use as a context manager or call close().
    
    ``Store(location)``: a file path (SQLite) or a ``postgresql://`` URL. ``Store.open(home)``
    creates ``home`` and the database when missing; both bring the schema up to SCHEMA_VERSION.
    One Store object per thread (connections are not shared). ``backend`` is "sqlite" or
    "postgresql"; ``path`` is the file (SQLite) or the URL (PostgreSQL), ``where`` its printable
    form (no password).
    """

    def __init__(self, path, *, busy_timeout: float = BUSY_TIMEOUT_S, rule_set: str | None = None,
                 migrate: bool = True):
        self.busy_timeout = busy_timeout
        self._owner = threading.get_ident()
        self._in_tx = False
        self.conflicts = 0  # transactions PostgreSQL aborted as deadlocks (retried by the workflow)
        if pg.is_url(path):
            self.backend = "postgresql"
            self.path = path
            self.where = pg.redact_url(path)
            self.conn = pg.connect(path, busy_timeout=busy_timeout)
            self._setup(rule_set, migrate)
            return
        self.backend = "sqlite"
        self.path = Path(path)
        self.where = str(self.path)
        self.conn = sqlite_backend.connect(self.path, busy_timeout=busy_timeout)
        try:
            self._setup(rule_set, migrate)
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(f"{self.path}: not a usable store: {exc}") from None

    def _setup(self, rule_set: str | None, migrate: bool) -> None:
        try:
            if migrate:
                self._migrate(rule_set)
            elif self.schema_version() != SCHEMA_VERSION:
                raise StoreError(f"{self.where}: schema version {self.schema_version()}, this build "
                                 f"needs {SCHEMA_VERSION}")
        except BaseException:
            self.conn.close()
            raise

    @classmethod
    def open(cls, home=None, *, db: str | None = None, **kwargs) -> "Connection":
        """The store at ``db`` (a PostgreSQL URL) when given; else SQLite under ``home``; with
        neither, the URL in MYNAEMU_DB when set, else SQLite under default_home()."""
        if db is None and home is None:
            db = os.environ.get("MYNAEMU_DB") or None
        return cls(store_location(home if home is not None else default_home(), db), **kwargs)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def is_pg(self) -> bool:
        return self.backend == "postgresql"

    @property
    def IntegrityError(self):  # noqa: N802 - reads like the exception class it is
        """The backend's integrity-violation exception (unique, check, foreign key)."""
        if self.is_pg:
            import psycopg

            return psycopg.IntegrityError
        return sqlite3.IntegrityError

    # --- transactions -----------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self):
        """One write transaction; any exception rolls back and propagates.

        SQLite: BEGIN IMMEDIATE (the single write lock, taken now). PostgreSQL: BEGIN at READ
        COMMITTED; callers lock what they read before a change (lock_card, lock_name)."""
        if self._in_tx:
            raise RuntimeError("nested transaction")
        if self.is_pg:
            self.conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        else:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreBusy(f"{self.path}: the store is busy (another process held it for "
                                    f"{self.busy_timeout:g} s); try again") from None
                raise StoreError(f"{self.path}: {exc}") from None
        self._in_tx = True
        try:
            yield self.conn
        except BaseException as exc:
            try:
                self.conn.execute("ROLLBACK")
            except StoreError:
                pass  # the server is gone; it rolled back itself
            if isinstance(exc, StoreConflict):
                self.conflicts += 1
            raise
        else:
            self._before_commit()
            self.conn.execute("COMMIT")
        finally:
            self._in_tx = False

    def _before_commit(self) -> None:
        """Runs inside every write transaction just before COMMIT (the audit chain seals here)."""

    @property
    def in_transaction(self) -> bool:
        return self._in_tx

    # --- locks (PostgreSQL; on SQLite BEGIN IMMEDIATE already excludes every other writer) ----
    def lock_card(self, app_id: str) -> None:
        """Lock the card's holder and then the card, for the rest of the transaction.

        The person first, always: an operation may touch several cards of one person (a renewal
        retires the old card, 失効 by death ends them all), and taking the person's lock before
        any card's is a single order, so two transactions never wait on each other in a cycle."""
        if not self.is_pg or not self._in_tx:
            return
        row = self.conn.execute("SELECT person_id FROM cards WHERE application_id = ?", (app_id,)).fetchone()
        if row is None:
            return
        self.conn.execute("SELECT id FROM persons WHERE id = ? FOR UPDATE", (row[0],))
        self.conn.execute("SELECT application_id FROM cards WHERE application_id = ? FOR UPDATE", (app_id,))

    def lock_person(self, person_id: int) -> None:
        if self.is_pg and self._in_tx:
            self.conn.execute("SELECT id FROM persons WHERE id = ? FOR UPDATE", (person_id,))

    def lock_name(self, name: str) -> None:
        """A transaction-scoped lock on a name (PostgreSQL advisory lock), for work on rows that
        do not exist yet: a new person at 申請 (keyed by the 基本4情報), a settings counter."""
        if self.is_pg and self._in_tx:
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (name,))

    def _migrate(self, rule_set: str | None) -> None:
        # Fast path without the write lock: an up-to-date store is only read (WAL readers never
        # wait for a writer), so many CLI processes can open it while one holds a transaction.
        if self.schema_version() == SCHEMA_VERSION:
            have = dict(self.conn.execute("SELECT key, value FROM settings").fetchall())
            if {"rule_set", "numbering_secret", "created_at"} <= set(have):
                if rule_set is not None and rule_set != have["rule_set"]:
                    raise StoreError(f"{self.where}: this deployment uses rule set {have['rule_set']!r}, "
                                     f"not {rule_set!r} (chosen once per deployment)")
                return
        with self.transaction() as conn:
            # PostgreSQL: two processes creating the schema at once would collide in the catalog;
            # this lock makes the second wait and then find the work done (SQLite: BEGIN IMMEDIATE).
            self.lock_name("mynaemu schema migration")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                         "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise StoreError(f"{self.where}: schema version {current} is newer than this build "
                                 f"({SCHEMA_VERSION}); upgrade mynaemu")
            now = iso(_dt.datetime.now(_dt.timezone.utc))
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                chosen = [st.get(self.backend) if isinstance(st, dict) else st for st in statements]
                chosen = [st for st in chosen if st is not None]
                steps = [st for st in chosen if callable(st)]  # data steps run after the DDL
                chosen = [st for st in chosen if not callable(st)]
                if self.is_pg:
                    chosen = pg.order_creates([pg.ddl(st) for st in chosen])
                for statement in chosen:
                    conn.execute(statement)
                for step in steps:
                    step(conn)
                conn.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (version, description, now))
            self._init_settings(conn, rule_set, now)

    def _init_settings(self, conn, rule_set: str | None, now: str) -> None:
        have = dict(conn.execute("SELECT key, value FROM settings").fetchall())
        if "rule_set" not in have:
            name = rule_set or os.environ.get("MYNAEMU_RULE_SET") or policy.DEFAULT_RULE_SET
            policy.rule_set(name)  # ValueError on an unknown name
            conn.execute("INSERT INTO settings VALUES ('rule_set', ?)", (name,))
        elif rule_set is not None and rule_set != have["rule_set"]:
            raise StoreError(f"{self.where}: this deployment uses rule set {have['rule_set']!r}, "
                             f"not {rule_set!r} (chosen once per deployment)")
        if "numbering_secret" not in have:
            # NUM-2: the TEST stand-in for 機構's conversion is keyed per deployment.
            conn.execute("INSERT INTO settings VALUES ('numbering_secret', ?)", (secrets.token_hex(32),))
        if "created_at" not in have:
            conn.execute("INSERT INTO settings VALUES ('created_at', ?)", (now,))

    def schema_version(self) -> int:
        if self.is_pg:
            # to_regclass: NULL for a missing table, without an error that would abort a transaction
            if self.conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
                return 0
            return self.conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        try:
            return self.conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        except sqlite3.OperationalError:  # no schema_version table: an empty or foreign file
            return 0

    def setting(self, key: str) -> str:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def bump_setting(self, key: str, at_least: int = 1) -> int:
        """Increase an integer setting (a CRL number, RFC 5280 §5.2.3) to max(old + 1, at_least)
        and return it, atomically among concurrent writers. Inside an open transaction it joins
        it, so a caller can spend the number only if what it was spent on commits."""
        with (contextlib.nullcontext(self.conn) if self._in_tx else self.transaction()) as conn:
            self.lock_name(f"setting {key}")
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            number = max(int(row[0]) + 1 if row else 1, int(at_least))
            conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, str(number)))
        return number

    @property
    def rules(self) -> policy.RuleSet:
        return policy.rule_set(self.setting("rule_set"))

    @property
    def numbering_secret(self) -> bytes:
        return bytes.fromhex(self.setting("numbering_secret"))
