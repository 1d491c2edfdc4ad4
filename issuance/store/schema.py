"""The store's schema: ordered migrations, shared by SQLite and PostgreSQL (postgres.ddl translates)."""
from __future__ import annotations

from mynaemu.issuance.store.challenges import V8 as SPENT_CHALLENGES_V8
from mynaemu.issuance.store.custody import migrate_custody
from mynaemu.issuance.store.audit_chain import V5 as AUDIT_CHAIN_V5, V6 as AUDIT_RETENTION_V6
from mynaemu.issuance.store.kiosk_history import V7 as KIOSK_HISTORY_V7
from mynaemu.issuance.store.staff import V4 as STAFF_V4
from mynaemu.issuance.store.values import CARD_STATES, CERT_EVENTS


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
    (4, "staff: accounts, password hashes, rights (SEC-4..SEC-7)", STAFF_V4),
    (5, "audit chain: every audit record sealed into one hash chain (SEC-8)", AUDIT_CHAIN_V5),
    (6, "audit retention: the deletion history, the chain's anchor after a purge (SEC-8, SEC-12)",
     AUDIT_RETENTION_V6),
    (7, "kiosk history: every document issued at a kiosk, no personal data (CVS-18 item 3)", KIOSK_HISTORY_V7),
    (8, "the centre's spent challenges (made by the serving parent before, if missing)", SPENT_CHALLENGES_V8),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]
