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


def verify_chain(conn) -> tuple[int, str | None]:
    """(records checked, None) for an intact chain, else (records checked, what is wrong with the
    first record that does not match)."""
    expected_seq, prev, checked = 1, "", 0
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
    if (head_seq, head_hash) != (checked, prev):
        return checked, (f"the chain ends at position {checked} but its head says {head_seq} "
                         f"(records at the end were deleted)")
    return checked, None


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
