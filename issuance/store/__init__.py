"""The TEST back office's store: an embedded SQLite database under MYNAEMU_HOME, or PostgreSQL.

Backends: ``Store.open(home)`` is SQLite (one file, ``issuance.sqlite3``); a ``postgresql://`` URL
(``Store(url)``, ``Store.open(db=url)``, ``MYNAEMU_DB`` or the issue CLI's ``--db``) is PostgreSQL
through psycopg 3 (pg.py holds that dialect). Same schema, same migrations, same SQL and the same
workflow code on both; the few dialect differences are isolated (pg.py: placeholders, identity
columns, BYTEA, RETURNING id; here: BEGIN IMMEDIATE vs row locks, one migration step).

What it keeps (schema version 1, created by the ordered MIGRATIONS below):

- ``settings``: deployment facts: the rule set (policy.rule_set, chosen once per deployment),
  the numbering secret of the TEST 個人番号 function (numbering.py, NUM-2), creation time.
- ``persons``: 住民票コード, 基本4情報 (DATA-1), 代替文字 flags (DATA-5), 成年被後見人
  (guardianship, ELIG-2), residence status (M10: removed / deceased).
- ``individual_numbers``: every 個人番号 a person ever had, with validity instants (NUM-7 keeps
  the history; a number is never reused: UNIQUE over the whole history).
- ``person_changes``: history of the 基本4情報 and status (異動, MOV-1). Never a 個人番号.
- ``applications``: the form (FLOW-3): id as on the form's QR (FLOW-4, see make_form_id),
  kind first/renewal/reissue, the card it replaces, 不要 ticks (M9), 代替文字 confirmation.
- ``cards``: one per application: lifecycle state (STATE-1, see workflow.py), 交付通知書 id,
  15-digit card serial, validity, 4-digit security code, the personalised image as JSON.
- ``card_events``: every state change of a card, with the instant and the audit record.
- ``deliveries``: what was checked at the counter (STATE-3 item 7), who set the PINs (ELIG-3),
  proxy details (FLOW-PROXY-*). No PIN is ever stored here.
- ``certificates`` + ``cert_events``: per CA kind, serials unique per CA, validity, DER, and the
  status history issued / hold / released / revoked with instants and RFC 5280 reasons
  (STATE-2). The store answers revocation questions from these tables (RevocationSource).
- ``keys``: private keys (PKCS#8 PEM) by role, only while they are not on a card yet: from 発行
  until 交付 (which deletes them, and the chip image copy in ``cards.image``), and a key issued by
  a step done without the card (異動/renewal without --card) until write-card puts it on the card.
  As at J-LIS, no holder private key stays once the card holds it; counter work that rewrites
  the chip generates new keys in the presented card (cardwrite.py). Schema v3 deleted the keys of
  cards delivered before it. ``card_bindings``: the public half of each card's 共通AP key, which a
  presented card must prove it holds before it is written; ``card_writes``: card files committed
  but not yet renamed into place (paths and digests only), finished by the next command.
- ``audit``: operator id, terminal id, instant, operation, target, reason, outcome (SEC-8,
  DATA-3 操作者ID/操作端末ID). Refused attempts are audited too (SEC-8, SEC-9). Every text
  written here passes ``scrub()``, which masks any 12-digit run, so no 個人番号 can land in it;
  PINs are never passed to it.

Concurrency, SQLite: WAL journal, a busy timeout, and every write inside ``BEGIN IMMEDIATE`` (the
write lock is taken at the start, so two CLI processes serialise instead of failing on upgrade).
Reads that must be consistent with a later write happen inside the same transaction.

Concurrency, PostgreSQL: many writers at once, READ COMMITTED, and row locks taken before the
reads a change depends on: ``lock_card`` locks the holder's ``persons`` row and then the card row
(``SELECT … FOR UPDATE``), so every operation on a person's cards (a card, its replacement, the
person's 基本4情報) runs one at a time, and because the person is always locked first no two
transactions wait on each other in a cycle. Under READ COMMITTED each statement after the lock
sees every change committed before it, which is what BEGIN IMMEDIATE gives on SQLite. Work that
has no row yet (a new person at 申請, a counter in ``settings``) takes a transaction-scoped
advisory lock on its name (``lock_name``). A lock wait past the busy timeout is StoreBusy; a
deadlock (not expected with this order) is StoreConflict, which the workflow retries.

Batch issuance (batch.py): applications waiting in 申請/受付 are claimed one at a time with
``claim_next`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so N workers never wait on each other;
the single writer on SQLite). A claim is a lease (``cards.claim_owner``/``claim_until``) kept in
the store, so it outlives a killed worker: it is claimable again when the lease expires, or at
once when its owner is a dead process of this machine (``release_dead_claims``). A card is
generated at most once however claims overlap: ``generate`` runs under the card's row lock and
refuses any state but 申請/受付.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import secrets
import sqlite3
import threading
from pathlib import Path

import platformdirs

from mynaemu.issuance import policy

__all__ = [
    "DB_NAME", "SCHEMA_VERSION", "MIGRATIONS", "Store", "StoreError", "StoreBusy",
    "default_home", "scrub", "iso", "parse_iso", "make_form_id", "check_form_id", "normalise_form_id",
    "CARD_STATES", "CERT_EVENTS", "REVOCATION_REASONS", "StoreRevocationSource", "StoreConflict",
    "QUEUE_STATES", "claim_owner_id", "lease_stamp",
]

DB_NAME = "issuance.sqlite3"
BUSY_TIMEOUT_S = 30.0

# STATE-1 card lifecycle codes (Japanese labels live in workflow.py).
CARD_STATES = ("applied", "received", "issued", "awaiting_delivery", "active", "suspended",
               "abolished", "collected", "destroyed", "revoked")
CERT_EVENTS = ("issued", "hold", "released", "revoked")
# RFC 5280 §5.3.1 reason names used in cert_events.reason for "revoked"
REVOCATION_REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded",
                      "cessationOfOperation", "privilegeWithdrawn")


class StoreError(Exception):
    """The store cannot be opened or used (one line)."""


class StoreBusy(StoreError):
    """Another process held the write lock longer than the busy timeout."""


class StoreConflict(StoreBusy):
    """PostgreSQL aborted the transaction (deadlock or serialization failure); nothing was
    changed and the whole transaction may be run again."""


# Cards waiting for `generate` (申請, 受付): what batch workers claim.
QUEUE_STATES = ("applied", "received")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def default_home() -> Path:
    """MYNAEMU_HOME, else the user's data directory for mynaemu."""
    env = os.environ.get("MYNAEMU_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("mynaemu"))


_TWELVE_DIGITS = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")


def scrub(text):
    """Mask any 12-digit run (a 個人番号, NUM-1) in text destined for the audit or a log."""
    if text is None:
        return None
    return _TWELVE_DIGITS.sub("************", str(text))


def iso(instant: _dt.datetime) -> str:
    """An aware instant as ISO 8601 in UTC, to the second (sortable as text)."""
    if not isinstance(instant, _dt.datetime) or instant.utcoffset() is None:
        raise ValueError("instants must be timezone-aware datetimes")
    return instant.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat()


def parse_iso(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text)


# --- application / notice ids (FLOW-3, FLOW-4) ----------------------------------------------
# The seeds show a QR on the form and on the 交付通知書 but not its content (gap 9). Decision:
# 16 characters: 15 random symbols of Crockford's base-32 alphabet (no I, L, O, U, so nothing
# is misread when typed from paper) and one check symbol c with c + Σ α^(16-i)·v_i = 0 in
# GF(32) (α a primitive element). Distinct non-zero weights in a field catch every single-symbol
# error and every transposition of two distinct symbols (adjacent or not), the check included.
FORM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FORM_ID_LENGTH = 16
_GF32_POLY = 0b100101  # x^5 + x^2 + 1, primitive


def _gf32_mul(a: int, b: int) -> int:
    product = 0
    while b:
        if b & 1:
            product ^= a
        b >>= 1
        a <<= 1
        if a & 0b100000:
            a ^= _GF32_POLY
    return product


def _form_check(body: str) -> str:
    total, weight = 0, 1
    for ch in reversed(body):
        weight = _gf32_mul(weight, 2)  # α = x; weights α^1 .. α^15, all distinct and ≠ 1
        total ^= _gf32_mul(weight, FORM_ALPHABET.index(ch))
    return FORM_ALPHABET[total]


def make_form_id(rng=None) -> str:
    """A new 16-character form id (application or 交付通知書)."""
    pick = (rng or secrets.SystemRandom()).choice
    body = "".join(pick(FORM_ALPHABET) for _ in range(FORM_ID_LENGTH - 1))
    return body + _form_check(body)


def normalise_form_id(text: str) -> str:
    """Upper-case, drop spaces and hyphens (as typed from paper)."""
    if not isinstance(text, str):
        raise TypeError(f"an id must be a str, got {type(text).__name__}")
    return text.replace("-", "").replace(" ", "").upper()


def check_form_id(text: str) -> str:
    """The normalised id, or ValueError saying what is wrong with it."""
    value = normalise_form_id(text)
    if len(value) != FORM_ID_LENGTH:
        raise ValueError(f"id {text!r} must have {FORM_ID_LENGTH} characters, got {len(value)}")
    bad = sorted(set(value) - set(FORM_ALPHABET))
    if bad:
        raise ValueError(f"id {text!r} has characters outside {FORM_ALPHABET}: {''.join(bad)}")
    if _form_check(value[:-1]) != value[-1]:
        raise ValueError(f"id {text!r}: wrong check character (mistyped?)")
    return value


# ---------------------------------------------------------------------------------------------
# schema and migrations
# ---------------------------------------------------------------------------------------------

_V1 = [
    """CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL)""",
    """CREATE TABLE persons (
        id INTEGER PRIMARY KEY,
        juminhyo_code TEXT NOT NULL UNIQUE CHECK (length(juminhyo_code) = 11),
        name TEXT NOT NULL CHECK (name <> ''),
        name_kana TEXT NOT NULL DEFAULT '',
        birth TEXT NOT NULL,
        sex TEXT NOT NULL CHECK (sex IN ('1', '2', '9')),
        address TEXT NOT NULL CHECK (address <> ''),
        name_alt TEXT,
        address_alt TEXT,
        guardianship INTEGER NOT NULL DEFAULT 0 CHECK (guardianship IN (0, 1)),
        municipality_code TEXT NOT NULL CHECK (length(municipality_code) = 5),
        prefecture_romaji TEXT NOT NULL,
        city_romaji TEXT NOT NULL,
        resident_status TEXT NOT NULL DEFAULT 'resident'
            CHECK (resident_status IN ('resident', 'removed', 'deceased')),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL)""",
    "CREATE INDEX persons_basic4 ON persons (name, birth, sex, address)",
    """CREATE TABLE individual_numbers (
        id INTEGER PRIMARY KEY,
        person_id INTEGER NOT NULL REFERENCES persons (id),
        number TEXT NOT NULL UNIQUE CHECK (length(number) = 12),
        attempt INTEGER NOT NULL,
        valid_from TEXT NOT NULL,
        valid_until TEXT,
        change_reason TEXT)""",
    # NUM-7: exactly one current number per person
    "CREATE UNIQUE INDEX individual_numbers_current ON individual_numbers (person_id) "
    "WHERE valid_until IS NULL",
    """CREATE TABLE person_changes (
        id INTEGER PRIMARY KEY,
        person_id INTEGER NOT NULL REFERENCES persons (id),
        at TEXT NOT NULL,
        field TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT,
        reason TEXT,
        audit_id INTEGER REFERENCES audit (id))""",
    """CREATE TABLE applications (
        id TEXT PRIMARY KEY CHECK (length(id) = 16),
        person_id INTEGER NOT NULL REFERENCES persons (id),
        kind TEXT NOT NULL CHECK (kind IN ('first', 'renewal', 'reissue')),
        replaces TEXT REFERENCES applications (id),
        decline_sign INTEGER NOT NULL CHECK (decline_sign IN (0, 1)),
        alt_confirmed INTEGER NOT NULL CHECK (alt_confirmed IN (0, 1)),
        applied_at TEXT NOT NULL,
        received_at TEXT)""",
    f"""CREATE TABLE cards (
        application_id TEXT PRIMARY KEY REFERENCES applications (id),
        person_id INTEGER NOT NULL REFERENCES persons (id),
        state TEXT NOT NULL CHECK (state IN ({", ".join(repr(s) for s in CARD_STATES)})),
        serial TEXT UNIQUE,
        starts TEXT,
        expires TEXT,
        security_code TEXT,
        notice_id TEXT UNIQUE,
        personalised_at TEXT,
        delivered_at TEXT,
        image TEXT,
        replaced_by TEXT REFERENCES applications (id),
        last_change_at TEXT NOT NULL)""",
    "CREATE INDEX cards_person ON cards (person_id, state)",
    """CREATE TABLE card_events (
        id INTEGER PRIMARY KEY,
        application_id TEXT NOT NULL REFERENCES applications (id),
        at TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        operation TEXT NOT NULL,
        audit_id INTEGER REFERENCES audit (id))""",
    """CREATE TABLE deliveries (
        application_id TEXT PRIMARY KEY REFERENCES applications (id),
        at TEXT NOT NULL,
        identity_check TEXT NOT NULL,
        pins_set_by TEXT NOT NULL CHECK (pins_set_by IN ('holder', 'legal_representative')),
        proxy TEXT,
        notification_card_collected INTEGER NOT NULL)""",
    """CREATE TABLE certificates (
        id INTEGER PRIMARY KEY,
        application_id TEXT NOT NULL REFERENCES applications (id),
        ca_kind TEXT NOT NULL CHECK (ca_kind IN ('auth', 'sign')),
        serial INTEGER NOT NULL CHECK (serial > 0),
        issue_id TEXT NOT NULL,
        not_before TEXT NOT NULL,
        not_after TEXT NOT NULL,
        der BLOB NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('good', 'hold', 'revoked')),
        UNIQUE (ca_kind, serial))""",
    "CREATE INDEX certificates_card ON certificates (application_id, ca_kind)",
    f"""CREATE TABLE cert_events (
        id INTEGER PRIMARY KEY,
        cert_id INTEGER NOT NULL REFERENCES certificates (id),
        at TEXT NOT NULL,
        event TEXT NOT NULL CHECK (event IN ({", ".join(repr(s) for s in CERT_EVENTS)})),
        reason TEXT,
        audit_id INTEGER REFERENCES audit (id))""",
    "CREATE INDEX cert_events_cert ON cert_events (cert_id, at)",
    """CREATE TABLE keys (
        application_id TEXT NOT NULL REFERENCES applications (id),
        role TEXT NOT NULL,
        pem TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (application_id, role))""",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        operator TEXT NOT NULL,
        terminal TEXT NOT NULL,
        operation TEXT NOT NULL,
        target TEXT,
        reason TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
        detail TEXT)""",
]

# v2: what many concurrent writers and batch workers need.
# - cards.seq: the order cards were created in, for listings and the batch queue (v1 ordered by
#   SQLite's rowid, which PostgreSQL has no equivalent of). The one dialect-specific step: an
#   identity column on PostgreSQL; on SQLite the rowid, copied by a trigger.
# - cards.claim_owner / claim_until: the lease of a batch worker on a waiting card (batch.py).
# - indexes for the per-card and per-person lookups every operation makes (at scale a full scan
#   of card_events per operation would dominate).
_V2 = [
    {"sqlite": "ALTER TABLE cards ADD COLUMN seq INTEGER",
     "postgresql": "ALTER TABLE cards ADD COLUMN seq BIGINT GENERATED BY DEFAULT AS IDENTITY"},
    {"sqlite": "UPDATE cards SET seq = rowid"},
    {"sqlite": "CREATE TRIGGER cards_seq AFTER INSERT ON cards FOR EACH ROW WHEN NEW.seq IS NULL "
               "BEGIN UPDATE cards SET seq = NEW.rowid WHERE rowid = NEW.rowid; END"},
    "ALTER TABLE cards ADD COLUMN claim_owner TEXT",
    "ALTER TABLE cards ADD COLUMN claim_until TEXT",
    "CREATE UNIQUE INDEX cards_seq_order ON cards (seq)",
    "CREATE INDEX cards_queue ON cards (state, seq)",
    "CREATE INDEX card_events_card ON card_events (application_id, id)",
    "CREATE INDEX applications_replaces ON applications (replaces)",
    "CREATE INDEX individual_numbers_person ON individual_numbers (person_id, attempt)",
    "CREATE INDEX audit_target ON audit (target, id)",
]

# v3: custody and binding (cardwrite.py). card_bindings: the public half of each card's 共通AP
# key, recorded at 発行, that a presented card must prove it holds before the back office writes
# it. card_writes: a card file committed but not yet renamed into place (public data only:
# paths and digests), finished by the next command. The data step binds the cards whose keys the
# store still holds and deletes the private keys of every card already handed over (J-LIS keeps
# no holder private key).
def _v3_custody(conn) -> None:
    from mynaemu.issuance.lifecycle.cardwrite import migrate_custody

    migrate_custody(conn)


_V3 = [
    """CREATE TABLE card_bindings (
        application_id TEXT PRIMARY KEY REFERENCES applications (id),
        role TEXT NOT NULL,
        public_key TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE card_writes (
        id TEXT PRIMARY KEY,
        application_id TEXT NOT NULL REFERENCES applications (id),
        operation TEXT NOT NULL,
        target TEXT NOT NULL,
        staged TEXT NOT NULL,
        digest TEXT NOT NULL,
        previous TEXT,
        created_at TEXT NOT NULL,
        audit_id INTEGER REFERENCES audit (id))""",
    _v3_custody,
]

# Ordered migrations: (version, description, statements). Append, never edit a shipped one.
# A statement is shared SQL (PostgreSQL types via pg.ddl) or {backend: SQL} for the rare step
# that differs; a backend missing from such a dict skips it.
MIGRATIONS: list[tuple[int, str, list]] = [
    (1, "initial schema: persons, numbers, applications, cards, certificates, keys, audit", _V1),
    (2, "scale: card order, batch claims, lookup indexes", _V2),
    (3, "custody: card key bindings, pending card writes, no holder key after delivery", _V3),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


# ---------------------------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------------------------

def store_location(home, db: str | None = None):
    """Where the store is: the PostgreSQL URL `db` when given (StoreError if it is not one), else
    the SQLite file under `home`. One answer for the issue CLI, the kiosk and the centre."""
    from mynaemu.issuance.store import postgres as pg

    if db is not None:
        if not pg.is_url(db):
            raise StoreError(f"database URL must start with postgresql:// (got {pg.redact_url(str(db))!r})")
        return db
    return Path(home) / DB_NAME


class Store:
    """The store over SQLite or PostgreSQL. Use as a context manager or call close().

    ``Store(location)``: a file path (SQLite) or a ``postgresql://`` URL. ``Store.open(home)``
    creates ``home`` and the database when missing; both bring the schema up to SCHEMA_VERSION.
    One Store object per thread (connections are not shared). ``backend`` is "sqlite" or
    "postgresql"; ``path`` is the file (SQLite) or the URL (PostgreSQL), ``where`` its printable
    form (no password).
    """

    def __init__(self, path, *, busy_timeout: float = BUSY_TIMEOUT_S, rule_set: str | None = None,
                 migrate: bool = True):
        from mynaemu.issuance.store import postgres as pg

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
        try:
            from mynaemu.issuance.private_files import private_sqlite

            private_sqlite(self.path)  # 0600 file in a 0700 home, whatever the umask (and so -wal/-shm)
            # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
            self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a crash loses no commit order
            # deleted rows (the holder keys dropped at 交付, cardwrite.py) are zeroed, not left in free pages
            self.conn.execute("PRAGMA secure_delete = ON")
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
    def open(cls, home=None, *, db: str | None = None, **kwargs) -> "Store":
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
            self.conn.execute("COMMIT")
        finally:
            self._in_tx = False

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
        from mynaemu.issuance.store import postgres as pg

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

    # --- audit (SEC-8) ----------------------------------------------------------------------
    def audit(self, *, at: _dt.datetime, operator: str, terminal: str, operation: str,
              target: str | None, outcome: str, reason: str | None = None,
              detail: dict | None = None) -> int:
        """Append an audit record (inside the caller's transaction, or in one of its own)."""
        if outcome not in ("ok", "refused", "error"):
            raise ValueError(f"bad audit outcome {outcome!r}")
        for what, value in (("operator", operator), ("terminal", terminal)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"the audit needs a non-empty {what} id (SEC-4, SEC-8)")
        row = (iso(at), iso(_dt.datetime.now(_dt.timezone.utc)), scrub(operator), scrub(terminal),
               operation, scrub(target), scrub(reason), outcome,
               scrub(json.dumps(detail, ensure_ascii=False, sort_keys=True)) if detail else None)
        sql = ("INSERT INTO audit (at, recorded_at, operator, terminal, operation, target, reason,"
               " outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        if self._in_tx:
            return self.conn.execute(sql, row).lastrowid
        with self.transaction() as conn:
            return conn.execute(sql, row).lastrowid

    def audit_rows(self, target: str | None = None) -> list[dict]:
        if target is None:
            rows = self.conn.execute("SELECT * FROM audit ORDER BY id").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM audit WHERE target = ? ORDER BY id", (target,)).fetchall()
        return [dict(r) for r in rows]

    # --- persons and numbers (NUM-2, NUM-7) ---------------------------------------------------
    def find_person_by_basic4(self, name: str, birth: _dt.date, sex: str, address: str):
        return self.conn.execute(
            "SELECT * FROM persons WHERE name = ? AND birth = ? AND sex = ? AND address = ?",
            (name, birth.isoformat(), sex, address)).fetchone()

    def person(self, person_id: int):
        row = self.conn.execute("SELECT * FROM persons WHERE id = ?", (person_id,)).fetchone()
        if row is None:
            raise KeyError(person_id)
        return row

    def new_juminhyo_code(self) -> str:
        """A fresh 11-digit 住民票コード (the municipality's, AP-6); its own check rule is not modelled."""
        while True:
            code = f"{secrets.randbelow(10**11):011d}"
            if self.conn.execute("SELECT 1 FROM persons WHERE juminhyo_code = ?", (code,)).fetchone() is None:
                return code

    def insert_person(self, *, juminhyo_code: str, name: str, name_kana: str, birth: _dt.date, sex: str,
                      address: str, name_alt: str | None, address_alt: str | None, guardianship: bool,
                      municipality_code: str, prefecture_romaji: str, city_romaji: str,
                      at: _dt.datetime) -> int:
        return self.conn.execute(
            "INSERT INTO persons (juminhyo_code, name, name_kana, birth, sex, address, name_alt,"
            " address_alt, guardianship, municipality_code, prefecture_romaji, city_romaji,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (juminhyo_code, name, name_kana, birth.isoformat(), sex, address, name_alt, address_alt,
             int(guardianship), municipality_code, prefecture_romaji, city_romaji, iso(at), iso(at)),
        ).lastrowid

    def assign_individual_number(self, person_id: int, *, at: _dt.datetime, reason: str | None = None) -> str:
        """Designate a (new) 個人番号 for the person (NUM-2, NUM-5), closing the current one (NUM-7).

        The number comes from the keyed TEST conversion of the 住民票コード; `attempt` steps past
        every number this person had and any collision with another person's (past) number.
        """
        from mynaemu.issuance.numbering import individual_number_from_juminhyo_code

        person = self.person(person_id)
        row = self.conn.execute("SELECT max(attempt) FROM individual_numbers WHERE person_id = ?",
                                (person_id,)).fetchone()
        attempt = 0 if row[0] is None else row[0] + 1
        while True:
            number = individual_number_from_juminhyo_code(person["juminhyo_code"], self.numbering_secret,
                                                          attempt=attempt)
            if self.conn.execute("SELECT 1 FROM individual_numbers WHERE number = ?", (number,)).fetchone() is None:
                break
            attempt += 1
        self.conn.execute("UPDATE individual_numbers SET valid_until = ?, change_reason = ? "
                          "WHERE person_id = ? AND valid_until IS NULL", (iso(at), reason, person_id))
        self.conn.execute("INSERT INTO individual_numbers (person_id, number, attempt, valid_from) "
                          "VALUES (?, ?, ?, ?)", (person_id, number, attempt, iso(at)))
        return number

    def individual_number(self, person_id: int) -> str:
        row = self.conn.execute("SELECT number FROM individual_numbers WHERE person_id = ? AND "
                                "valid_until IS NULL", (person_id,)).fetchone()
        if row is None:
            raise KeyError(f"person {person_id} has no current individual number")
        return row[0]

    def number_history(self, person_id: int) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT number, attempt, valid_from, valid_until, change_reason FROM individual_numbers "
            "WHERE person_id = ? ORDER BY attempt", (person_id,))]

    def change_person(self, person_id: int, *, at: _dt.datetime, field: str, value, reason: str,
                      audit_id: int | None) -> None:
        if field not in ("name", "address", "sex", "birth", "name_alt", "address_alt", "guardianship",
                         "resident_status"):
            raise ValueError(f"cannot change person field {field!r}")
        old = self.person(person_id)[field]
        self.conn.execute(f"UPDATE persons SET {field} = ?, updated_at = ? WHERE id = ?",
                          (value, iso(at), person_id))
        self.conn.execute("INSERT INTO person_changes (person_id, at, field, old_value, new_value, reason,"
                          " audit_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (person_id, iso(at), field, None if old is None else str(old),
                           None if value is None else str(value), reason, audit_id))

    # --- applications and cards -------------------------------------------------------------
    def application(self, app_id: str):
        return self.conn.execute("SELECT * FROM applications WHERE id = ?", (app_id,)).fetchone()

    def card(self, app_id: str):
        return self.conn.execute("SELECT * FROM cards WHERE application_id = ?", (app_id,)).fetchone()

    def cards_of_person(self, person_id: int) -> list:
        return self.conn.execute("SELECT * FROM cards WHERE person_id = ? ORDER BY seq",
                                 (person_id,)).fetchall()

    def application_ids(self, states=None) -> list[str]:
        if states is None:
            rows = self.conn.execute("SELECT application_id FROM cards ORDER BY seq")
        else:
            marks = ", ".join("?" for _ in states)
            rows = self.conn.execute(f"SELECT application_id FROM cards WHERE state IN ({marks}) "
                                     "ORDER BY seq", tuple(states))
        return [r[0] for r in rows]

    # --- batch claims (batch.py) -------------------------------------------------------------
    def claim_next(self, owner: str, *, lease_s: float, batch_started: str,
                   states: tuple = QUEUE_STATES) -> str | None:
        """Claim the oldest waiting card nobody holds and return its id (None: nothing left).

        A card is free when it has no claim, when its lease ran out, or when it was refused in an
        earlier batch (claim_owner "refused", claim_until = when; ``batch_started`` is this
        batch's start, so a card refused in this batch is not tried again by it). PostgreSQL
        skips rows another worker is claiming right now (FOR UPDATE SKIP LOCKED) instead of
        waiting for them; SQLite has one writer at a time anyway.
        """
        if not states or set(states) - set(CARD_STATES):
            raise ValueError(f"claimable states must be card states, got {states!r}")
        now = _dt.datetime.now(_dt.timezone.utc)
        until = lease_stamp(now + _dt.timedelta(seconds=lease_s))
        marks = ", ".join("?" for _ in states)
        sql = (f"SELECT application_id FROM cards WHERE state IN ({marks}) AND (claim_owner IS NULL "
               "OR (claim_owner = 'refused' AND claim_until < ?) "
               "OR (claim_owner <> 'refused' AND claim_until < ?)) ORDER BY seq LIMIT 1")
        if self.is_pg:
            sql += " FOR UPDATE SKIP LOCKED"
        with self.transaction() as conn:
            row = conn.execute(sql, (*states, batch_started, lease_stamp(now))).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE cards SET claim_owner = ?, claim_until = ? WHERE application_id = ?",
                         (owner, until, row[0]))
        return row[0]

    def mark_refused(self, app_id: str, owner: str) -> None:
        """Leave a card this batch could not generate to the next batch (see claim_next)."""
        with self.transaction() as conn:
            conn.execute("UPDATE cards SET claim_owner = 'refused', claim_until = ? "
                         "WHERE application_id = ? AND claim_owner = ?",
                         (lease_stamp(), app_id, owner))

    def clear_claim(self, app_id: str) -> None:
        """Inside the transaction that finishes the card (generate)."""
        self.conn.execute("UPDATE cards SET claim_owner = NULL, claim_until = NULL WHERE application_id = ?",
                          (app_id,))

    def claims(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT application_id, state, claim_owner, claim_until FROM cards "
            "WHERE claim_owner IS NOT NULL ORDER BY seq")]

    def release_dead_claims(self) -> list[str]:
        """Free at once the claims of workers of this machine that no longer run (their lease
        would free them later anyway). Returns the ids freed."""
        host = _machine_id()
        dead = {}
        for row in self.claims():
            owner = row["claim_owner"]
            parts = owner.split("/")
            if row["state"] not in QUEUE_STATES or len(parts) != 3 or parts[0] != host:
                continue
            if not _pid_alive(int(parts[1])):
                dead[row["application_id"]] = owner
        if dead:
            with self.transaction() as conn:
                for app_id, owner in dead.items():
                    conn.execute("UPDATE cards SET claim_owner = NULL, claim_until = NULL "
                                 "WHERE application_id = ? AND claim_owner = ?", (app_id, owner))
        return sorted(dead)

    def new_form_id(self, column: str = "application") -> str:
        while True:
            candidate = make_form_id()
            if column == "application":
                hit = self.conn.execute("SELECT 1 FROM applications WHERE id = ?", (candidate,)).fetchone()
            else:
                hit = self.conn.execute("SELECT 1 FROM cards WHERE notice_id = ?", (candidate,)).fetchone()
            if hit is None:
                return candidate

    def new_card_serial(self) -> str:
        while True:
            serial = f"{secrets.randbelow(10**15):015d}"
            if self.conn.execute("SELECT 1 FROM cards WHERE serial = ?", (serial,)).fetchone() is None:
                return serial

    def set_card_state(self, app_id: str, to_state: str, *, at: _dt.datetime, operation: str,
                       audit_id: int | None) -> None:
        if to_state not in CARD_STATES:
            raise ValueError(f"unknown card state {to_state!r}")
        row = self.card(app_id)
        self.conn.execute("UPDATE cards SET state = ?, last_change_at = ? WHERE application_id = ?",
                          (to_state, iso(at), app_id))
        self.conn.execute("INSERT INTO card_events (application_id, at, from_state, to_state, operation,"
                          " audit_id) VALUES (?, ?, ?, ?, ?, ?)",
                          (app_id, iso(at), row["state"] if row else None, to_state, operation, audit_id))

    def card_events(self, app_id: str) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT at, from_state, to_state, operation FROM card_events WHERE application_id = ? "
            "ORDER BY id", (app_id,))]

    # --- keys ---------------------------------------------------------------------------------
    def put_key(self, app_id: str, role: str, pem: bytes, at: _dt.datetime) -> None:
        self.conn.execute("INSERT INTO keys (application_id, role, pem, created_at) VALUES (?, ?, ?, ?) "
                          "ON CONFLICT (application_id, role) DO UPDATE SET pem = excluded.pem, "
                          "created_at = excluded.created_at",
                          (app_id, role, pem.decode("ascii"), iso(at)))

    def keys(self, app_id: str) -> dict[str, bytes]:
        return {r["role"]: r["pem"].encode("ascii")
                for r in self.conn.execute("SELECT role, pem FROM keys WHERE application_id = ?", (app_id,))}

    def delete_keys(self, app_id: str, roles=None) -> int:
        if roles is None:
            return self.conn.execute("DELETE FROM keys WHERE application_id = ?", (app_id,)).rowcount
        marks = ", ".join("?" for _ in roles)
        return self.conn.execute(f"DELETE FROM keys WHERE application_id = ? AND role IN ({marks})",
                                 (app_id, *roles)).rowcount

    # --- certificates (STATE-2) -------------------------------------------------------------
    def serial_taken(self, ca_kind: str, serial: int) -> bool:
        return self.conn.execute("SELECT 1 FROM certificates WHERE ca_kind = ? AND serial = ?",
                                 (ca_kind, serial)).fetchone() is not None

    def new_cert_serial(self, ca_kind: str) -> int:
        """A random 4-octet serial (profiles.SERIAL_MIN..SERIAL_MAX, §13.3) unused by this CA.

        UNIQUE (ca_kind, serial) is the guarantee: a serial two transactions drew at once makes
        the second insert_certificate a StoreConflict, and the workflow runs it again."""
        from mynaemu.issuance.pki.profiles import SERIAL_MAX, SERIAL_MIN

        while True:
            serial = SERIAL_MIN + secrets.randbelow(SERIAL_MAX - SERIAL_MIN + 1)
            if not self.serial_taken(ca_kind, serial):
                return serial

    def insert_certificate(self, app_id: str, ca_kind: str, certificate, issue_id: str, *,
                           at: _dt.datetime, audit_id: int | None) -> int:
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            cert_id = self.conn.execute(
                "INSERT INTO certificates (application_id, ca_kind, serial, issue_id, not_before, not_after,"
                " der, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'good')",
                (app_id, ca_kind, certificate.serial_number, issue_id, iso(certificate.not_valid_before_utc),
                 iso(certificate.not_valid_after_utc), certificate.public_bytes(Encoding.DER)),
            ).lastrowid
        except self.IntegrityError as exc:
            if "serial" not in str(exc):
                raise
            # UNIQUE (ca_kind, serial): a concurrent transaction drew the same serial after
            # new_cert_serial looked; nothing is written, the workflow runs the whole one again
            raise StoreConflict(f"{self.where}: {ca_kind} serial {certificate.serial_number:08X} "
                                "is taken; run the transaction again") from None
        self.cert_event(cert_id, "issued", at=at, reason=None, audit_id=audit_id)
        return cert_id

    def cert_event(self, cert_id: int, event: str, *, at: _dt.datetime, reason: str | None,
                   audit_id: int | None) -> None:
        if event not in CERT_EVENTS:
            raise ValueError(f"unknown certificate event {event!r}")
        if event == "revoked" and reason not in REVOCATION_REASONS:
            raise ValueError(f"revocation reason must be one of {', '.join(REVOCATION_REASONS)}")
        status = {"issued": "good", "hold": "hold", "released": "good", "revoked": "revoked"}[event]
        self.conn.execute("UPDATE certificates SET status = ? WHERE id = ?", (status, cert_id))
        self.conn.execute("INSERT INTO cert_events (cert_id, at, event, reason, audit_id) VALUES (?, ?, ?, ?, ?)",
                          (cert_id, iso(at), event, reason, audit_id))

    def certificates_of(self, app_id: str, *, include_revoked: bool = True) -> list:
        sql = "SELECT * FROM certificates WHERE application_id = ?"
        if not include_revoked:
            sql += " AND status <> 'revoked'"
        return self.conn.execute(sql + " ORDER BY id", (app_id,)).fetchall()

    def current_certificate(self, app_id: str, ca_kind: str):
        """The newest certificate of that kind on the card (None when it never had one)."""
        return self.conn.execute("SELECT * FROM certificates WHERE application_id = ? AND ca_kind = ? "
                                 "ORDER BY id DESC LIMIT 1", (app_id, ca_kind)).fetchone()

    def certificate_by_serial(self, ca_kind: str, serial: int):
        return self.conn.execute("SELECT * FROM certificates WHERE ca_kind = ? AND serial = ?",
                                 (ca_kind, serial)).fetchone()

    def cert_events(self, cert_id: int) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT at, event, reason FROM cert_events WHERE cert_id = ? ORDER BY id", (cert_id,))]

    def status_at(self, cert_row, at: _dt.datetime) -> dict:
        """The certificate's status as of instant ``at`` (events later than ``at`` are ignored, so
        the settable clock can look back): {"status": good|hold|revoked|expired|not_yet_valid,
        "since": iso or None, "reason": RFC 5280 reason or None, "revoked_at": iso or None}."""
        when = iso(at)
        state = {"status": "good", "since": None, "reason": None, "revoked_at": None}
        events = self.conn.execute("SELECT at, event, reason FROM cert_events WHERE cert_id = ? AND at <= ? "
                                   "ORDER BY at, id", (cert_row["id"], when)).fetchall()
        if not events:
            return {"status": "not_yet_valid" if when < cert_row["not_before"] else "unknown",
                    "since": None, "reason": None, "revoked_at": None}
        for ev in events:
            if ev["event"] in ("issued", "released"):
                state = {"status": "good", "since": ev["at"], "reason": None, "revoked_at": None}
            elif ev["event"] == "hold":
                state = {"status": "hold", "since": ev["at"], "reason": "certificateHold", "revoked_at": ev["at"]}
            elif ev["event"] == "revoked":
                state = {"status": "revoked", "since": ev["at"], "reason": ev["reason"], "revoked_at": ev["at"]}
                break  # STATE-2: revocation is final
        if state["status"] == "good":
            if when > cert_row["not_after"]:
                state = {"status": "expired", "since": cert_row["not_after"], "reason": None, "revoked_at": None}
            elif when < cert_row["not_before"]:
                state = {"status": "not_yet_valid", "since": None, "reason": None, "revoked_at": None}
        return state

    def revoked_rows(self, ca_kind: str, at: _dt.datetime) -> list[tuple]:
        """(cert row, status dict) of every certificate of ``ca_kind`` on hold or revoked at ``at``.
        Entries stay after the certificate expires (the CRL decision of revocation.py)."""
        when = iso(at)
        out = []
        rows = self.conn.execute(
            "SELECT DISTINCT c.* FROM certificates c JOIN cert_events e ON e.cert_id = c.id "
            "WHERE c.ca_kind = ? AND e.event IN ('hold', 'revoked') AND e.at <= ? "
            "ORDER BY c.serial", (ca_kind, when)).fetchall()
        for row in rows:
            status = self.status_at(row, at)
            if status["status"] in ("hold", "revoked"):
                out.append((row, status))
        return out

    # --- RevocationSource (issuance/pki/revocation.py) ------------------------------------------
    def certificate_status(self, ca_kind: str, serial: int, at: _dt.datetime):
        """The protocol's view: good / hold / revoked as of ``at``; "unknown" for a serial this CA
        never issued or had not issued yet at ``at``. An expired certificate is still "good"
        here (with its not_after): expiry is the verifier's date check, not revocation."""
        from mynaemu.issuance.pki import revocation as rv

        rv.check_kind(ca_kind)
        rv.check_serial(serial)
        at = rv.instant(at)
        row = self.certificate_by_serial(ca_kind, serial)
        if row is None or not self.delivered_by(row["application_id"], at):
            # Decision (trust boundaries): a certificate is not "good" before its card is handed
            # over (交付). RFC 6960 §2.2: "unknown" when the responder does not know the status;
            # a relying party must not treat it as good (the centre refuses it, exit 5), and it
            # is not a revocation, so no CRL entry or revocation time is invented for it.
            return rv.CertStatus(rv.UNKNOWN)
        status = self.status_at(row, at)
        not_after = parse_iso(row["not_after"])
        if status["status"] in ("good", "expired"):
            return rv.CertStatus(rv.GOOD, not_after=not_after)
        if status["status"] == "hold":
            return rv.CertStatus(rv.HOLD, parse_iso(status["revoked_at"]),
                                 _reason_flag("certificateHold"), not_after)
        if status["status"] == "revoked":
            return rv.CertStatus(rv.REVOKED, parse_iso(status["revoked_at"]),
                                 _reason_flag(status["reason"]), not_after)
        return rv.CertStatus(rv.UNKNOWN)

    def delivered_by(self, app_id: str, at: _dt.datetime) -> bool:
        """Was the card of `app_id` handed over (交付) at or before `at`? (True for a certificate
        the workflow did not issue for a card: there is no handover to wait for.)"""
        row = self.conn.execute("SELECT delivered_at FROM cards WHERE application_id = ?", (app_id,)).fetchone()
        return row is None or (row[0] is not None and row[0] <= iso(at))

    def revoked_certificates(self, ca_kind: str, at: _dt.datetime):
        from mynaemu.issuance.pki import revocation as rv

        rv.check_kind(ca_kind)
        at = rv.instant(at)
        return [rv.RevokedEntry(row["serial"], parse_iso(status["revoked_at"]), _reason_flag(status["reason"]))
                for row, status in self.revoked_rows(ca_kind, at)]

    def last_change_at(self, app_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT max(at) FROM (SELECT at FROM card_events WHERE application_id = ? "
            "UNION ALL SELECT e.at FROM cert_events e JOIN certificates c ON c.id = e.cert_id "
            "WHERE c.application_id = ?) AS changes", (app_id, app_id)).fetchone()
        return row[0]


def lease_stamp(instant: _dt.datetime | None = None) -> str:
    """Wall-clock time of a claim, to the microsecond, in one fixed sortable form (leases run on
    the real clock, never on the workflow's settable one; two batches a second apart must order)."""
    instant = instant or _dt.datetime.now(_dt.timezone.utc)
    return instant.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim_owner_id(token: str | None = None) -> str:
    """A batch worker's claim owner: machine/pid/token (the pid lets release_dead_claims free
    the claims of a killed worker at once; the token tells two lives of one pid apart)."""
    return f"{_machine_id()}/{os.getpid()}/{token or secrets.token_hex(4)}"


def _machine_id() -> str:
    # the boot id changes with every boot, so a pid is only compared within one boot of one host
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "noboot"
    import socket

    return f"{socket.gethostname()}-{boot}".replace("/", "_")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped by its parent) runs no more code
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _reason_flag(name: str):
    from cryptography import x509

    return x509.ReasonFlags(name)


class StoreRevocationSource:
    """A thread-safe RevocationSource over the store file or PostgreSQL URL, for the OCSP/CRL
    server threads: each question opens its own short read connection (connections are per
    thread)."""

    def __init__(self, path, *, busy_timeout: float = BUSY_TIMEOUT_S):
        from mynaemu.issuance.store import postgres as pg

        self.busy_timeout = busy_timeout
        if pg.is_url(path):
            self.path = path
            return
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no store here")

    def _with_store(self, fn):
        store = Store(self.path, busy_timeout=self.busy_timeout, migrate=False)
        try:
            return fn(store)
        finally:
            store.close()

    def certificate_status(self, ca_kind: str, serial: int, at: _dt.datetime):
        return self._with_store(lambda s: s.certificate_status(ca_kind, serial, at))

    def revoked_certificates(self, ca_kind: str, at: _dt.datetime):
        return self._with_store(lambda s: s.revoked_certificates(ca_kind, at))
