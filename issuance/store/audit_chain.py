"""The audit trail as a hash chain (SEC-8, SEC-12): tamper evidence for the store's `audit` table.

Every audit record is sealed when the transaction that wrote it commits: it gets the next
position in the one chain of the store (`chain_seq`, 1, 2, 3, …), the hash of the record before
it (`prev_hash`, empty for the first) and its own hash (`row_hash` = SHA-256 over prev_hash and
the record's fields, canonical JSON). The last position and hash are also kept in the one-row
table `audit_head`, so a deleted tail is noticed too. (Both tables are the trail: tests that
prove a refused step changed nothing but the trail leave out every table named audit*.)

Why at commit and not at insert: a step writes its audit record first and names its target and
details later in the same transaction (lifecycle/workflow.py), and on PostgreSQL many transactions
write at once. Sealing takes the chain's lock (an advisory transaction lock on PostgreSQL; BEGIN
IMMEDIATE already excludes every other writer on SQLite) only from the seal to the COMMIT, so
concurrent writers never fork the chain and never wait on each other for longer than a seal.

`verify_chain` walks the chain and names the first record that does not match: an edited field,
a deleted or inserted record, two records swapped, a position skipped, or a tail cut off.

Retention (SEC-8: logs are kept 5 years; SEC-12: data past its retention period is deleted, with
a deletion history). Only a *prefix* of the chain can go (`purge_prefix`): positions 1..k, never a
record from the middle. The purge keeps the position and hash of the last record it deleted as
the chain's new anchor in `audit_purges` (the deletion history: one row per purge), and the
purge's own audit record, written in the same transaction and sealed after it, names that
anchor too. `verify_chain` then starts at the anchor: the first record left must sit at
position k+1 and follow the anchor's hash; the purges must follow each other without a gap; and
the newest purge's own record must still be in the trail naming the same anchor. Whether a
record is old enough to go is decided above the store (issuance/staff/retention.py).
What it proves: nobody changed the trail except by rewriting every hash from that point on and
the head; an unkeyed chain cannot stop someone who can rewrite the whole database, which the
store's file modes (private_files.py) and the database's own access control are for.
"""
from __future__ import annotations

import hashlib
import json

CHAIN_LOCK = "mynaemu audit chain"
SCHEMA = 5   # the schema version that brought the chain (schema.py)
# The fields a record's hash covers, in this order.
FIELDS = ("id", "at", "recorded_at", "operator", "terminal", "operation", "target", "reason", "outcome", "detail")


def record_hash(prev_hash: str, row) -> str:
    body = json.dumps([prev_hash, *[row[f] for f in FIELDS]], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _head(conn) -> tuple[int, str]:
    row = conn.execute("SELECT seq, row_hash FROM audit_head WHERE id = 1").fetchone()
    return (0, "") if row is None else (int(row[0]), row[1])


def seal(conn, lock) -> int:
    """Inside the committing transaction: chain every record not sealed yet, in id order.
    `lock()` takes the chain's lock (PostgreSQL). Returns how many records were sealed."""
    if conn.execute("SELECT 1 FROM audit WHERE chain_seq IS NULL LIMIT 1").fetchone() is None:
        return 0
    lock()
    rows = conn.execute("SELECT * FROM audit WHERE chain_seq IS NULL ORDER BY id").fetchall()
    seq, prev = _head(conn)
    for row in rows:
        seq += 1
        digest = record_hash(prev, row)
        conn.execute("UPDATE audit SET chain_seq = ?, prev_hash = ?, row_hash = ? WHERE id = ?",
                     (seq, prev, digest, row["id"]))
        prev = digest
    conn.execute("INSERT INTO audit_head (id, seq, row_hash) VALUES (1, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, row_hash = excluded.row_hash", (seq, prev))
    return len(rows)


def hash_text(digest: str | None) -> str | None:
    """A hash as an audit record's detail holds it: in groups of 8, so the audit's masking of
    12-digit runs (values.scrub, NUM-1) can never touch it."""
    return None if digest is None else "-".join(digest[i:i + 8] for i in range(0, len(digest), 8))


def anchor(conn) -> tuple[int, str]:
    """(position, hash) of the last record purged, (0, "") when nothing was: where the chain starts."""
    row = conn.execute("SELECT last_seq, last_hash FROM audit_purges ORDER BY last_seq DESC LIMIT 1").fetchone()
    return (0, "") if row is None else (int(row[0]), row[1])


def _purge_history_problem(conn) -> str | None:
    """What is wrong with the deletion history itself, or None."""
    expected_first = 1
    purges = conn.execute("SELECT * FROM audit_purges ORDER BY id").fetchall()
    for row in purges:
        if row["first_seq"] != expected_first or row["records"] != row["last_seq"] - row["first_seq"] + 1:
            return (f"purge {row['id']} says it removed positions {row['first_seq']}..{row['last_seq']} "
                    f"({row['records']} records), but the purges before it end at position {expected_first - 1}")
        expected_first = row["last_seq"] + 1
    if purges:
        newest = purges[-1]
        record = conn.execute("SELECT detail FROM audit WHERE id = ?", (newest["audit_id"],)).fetchone()
        named = json.loads(record["detail"] or "{}") if record is not None else {}
        if (named.get("last_seq"), named.get("last_hash")) != (newest["last_seq"], hash_text(newest["last_hash"])):
            return (f"purge {newest['id']}: its own audit record {newest['audit_id']} is missing or names "
                    f"another anchor (the deletion history was edited)")
    return None


def verify_chain(conn) -> tuple[int, str | None]:
    """(records checked, None) for an intact chain, else (records checked, what is wrong with the
    first record that does not match). The chain starts after the last purge (`anchor`)."""
    problem = _purge_history_problem(conn)
    if problem is not None:
        return 0, problem
    start, prev = anchor(conn)
    expected_seq, checked = start + 1, 0
    for row in conn.execute("SELECT * FROM audit ORDER BY chain_seq, id"):
        if row["chain_seq"] is None:
            return checked, f"audit record {row['id']} is not in the chain (inserted outside a transaction?)"
        if row["chain_seq"] != expected_seq:
            return checked, (f"audit record {row['id']}: chain position {row['chain_seq']}, expected "
                             f"{expected_seq} (a record before it was deleted or moved)")
        if row["prev_hash"] != prev:
            return checked, f"audit record {row['id']}: does not follow the record before it (reordered?)"
        if record_hash(prev, row) != row["row_hash"]:
            return checked, f"audit record {row['id']}: its content does not match its hash (edited)"
        prev = row["row_hash"]
        expected_seq += 1
        checked += 1
    head_seq, head_hash = _head(conn)
    if (head_seq, head_hash) != (start + checked, prev):
        return checked, (f"the chain ends at position {start + checked} but its head says {head_seq} "
                         f"(records at the end were deleted)")
    return checked, None


# The tables whose rows point at an audit record (the step that made them). A purged record's
# pointers are cleared, not the rows: a card's history outlives its audit records.
REFERRERS = ("person_changes", "card_events", "cert_events", "card_writes")


def purgeable(conn, *, before: str, recorded_before: str) -> dict:
    """The longest prefix of the chain (after the anchor) whose every record has `at` < before
    and `recorded_at` < recorded_before (ISO UTC texts): {first_seq, last_seq, records, oldest_at,
    newest_at, last_hash}, records 0 when none; and `stopped_by`, the first record kept (its
    position, at and recorded_at), or None when every record qualifies."""
    start, _ = anchor(conn)
    stop = conn.execute("SELECT chain_seq, at, recorded_at FROM audit WHERE chain_seq > ? AND "
                        "NOT (at < ? AND recorded_at < ?) ORDER BY chain_seq LIMIT 1",
                        (start, before, recorded_before)).fetchone()
    last = (stop["chain_seq"] - 1) if stop is not None else \
        (conn.execute("SELECT max(chain_seq) FROM audit").fetchone()[0] or start)
    out = {"first_seq": start + 1, "last_seq": last, "records": max(0, last - start), "oldest_at": None,
           "newest_at": None, "last_hash": None,
           "stopped_by": dict(stop) if stop is not None else None}
    if out["records"]:
        span = conn.execute("SELECT min(at), max(at) FROM audit WHERE chain_seq > ? AND chain_seq <= ?",
                            (start, last)).fetchone()
        out["oldest_at"], out["newest_at"] = span[0], span[1]
        out["last_hash"] = conn.execute("SELECT row_hash FROM audit WHERE chain_seq = ?", (last,)).fetchone()[0]
    return out


def purge_prefix(conn, span: dict, *, at: str, recorded_at: str, operator: str, before: str,
                 audit_id: int) -> None:
    """Inside a transaction: delete chain positions span[first_seq]..span[last_seq] (from
    `purgeable`), clear the pointers at them, and record the purge with its anchor. `audit_id`:
    the purge's own audit record (written in this transaction, naming the same anchor). The
    caller holds the chain's lock (CHAIN_LOCK) since it planned the span."""
    if anchor(conn)[0] != span["first_seq"] - 1:
        raise RuntimeError("the chain's anchor moved since the purge was planned")
    doomed = "SELECT id FROM audit WHERE chain_seq >= ? AND chain_seq <= ?"
    bounds = (span["first_seq"], span["last_seq"])
    for table in REFERRERS:
        conn.execute(f"UPDATE {table} SET audit_id = NULL WHERE audit_id IN ({doomed})", bounds)
    conn.execute("DELETE FROM audit WHERE chain_seq >= ? AND chain_seq <= ?", bounds)
    conn.execute("INSERT INTO audit_purges (at, recorded_at, operator, purged_before, first_seq, last_seq, records,"
                 " last_hash, oldest_at, newest_at, audit_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (at, recorded_at, operator, before, span["first_seq"], span["last_seq"], span["records"],
                  span["last_hash"], span["oldest_at"], span["newest_at"], audit_id))


def purges(conn) -> list[dict]:
    return [dict(r) for r in conn.execute("SELECT * FROM audit_purges ORDER BY id")]


def migrate_chain(conn) -> None:
    """Schema v5 data step: chain the records an older store already holds, in id order."""
    seal(conn, lambda: None)


V5 = [
    "ALTER TABLE audit ADD COLUMN chain_seq INTEGER",
    "ALTER TABLE audit ADD COLUMN prev_hash TEXT",
    "ALTER TABLE audit ADD COLUMN row_hash TEXT",
    "CREATE UNIQUE INDEX audit_chain ON audit (chain_seq)",
    """CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        row_hash TEXT NOT NULL)""",
    migrate_chain,
]


# Schema v6: the deletion history of the trail (SEC-12); each row is also the chain's anchor from
# then on. audit_id has no foreign key: a later purge may remove that record in its turn.
V6 = [
    """CREATE TABLE audit_purges (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        operator TEXT NOT NULL,
        purged_before TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL UNIQUE,
        records INTEGER NOT NULL CHECK (records > 0),
        last_hash TEXT NOT NULL,
        oldest_at TEXT NOT NULL,
        newest_at TEXT NOT NULL,
        audit_id INTEGER NOT NULL)""",
]
