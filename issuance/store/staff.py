"""The staff table group of the store: accounts, password hashes, rights (SEC-4 … SEC-7).

Schema v4 (appended to MIGRATIONS in store/__init__.py):

- ``staff``: one row per member of staff (SEC-4: one ID each, never shared): the ID, the
  Argon2id hash of the password in PHC form (its parameters inside it) and the instant it was
  set (SEC-5 ageing counts from it), who made the account and when, and the instant and officer
  of its revocation (SEC-7). Rows are never deleted: a revoked ID stays, so it is never reissued
  to someone else and the audit keeps naming one person.
- ``staff_rights``: every grant of a right (a role or ``number``) with its instant and officer,
  and, once withdrawn, the instant and officer of that. A right holds for steps at
  granted_at <= T < withdrawn_at.

Instants are the store's ISO 8601 UTC text (``iso()``), which sorts as time does, so the window
tests are plain comparisons here. The SQL is the store's shared dialect (``?`` placeholders,
translated for PostgreSQL by postgres.py), so both backends run these same statements. This
module imports nothing of the store: the caller hands it the store (``conn``, transactions).
"""
from __future__ import annotations

__all__ = ["V4", "StaffTable"]

V4 = [
    """CREATE TABLE staff (
        id TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        password_set_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        revoked_at TEXT,
        revoked_by TEXT)""",
    """CREATE TABLE staff_rights (
        id INTEGER PRIMARY KEY,
        staff_id TEXT NOT NULL REFERENCES staff (id),
        right_name TEXT NOT NULL,
        granted_at TEXT NOT NULL,
        granted_by TEXT NOT NULL,
        withdrawn_at TEXT,
        withdrawn_by TEXT)""",
    "CREATE INDEX staff_rights_staff ON staff_rights (staff_id, right_name)",
]


class StaffTable:
    """The staff rows of one open store. Writes join the caller's transaction (store.transaction())."""

    def __init__(self, store):
        self.store = store

    @property
    def conn(self):
        return self.store.conn

    def lock(self) -> None:
        """Serialise staff changes among writers (PostgreSQL advisory lock; SQLite: BEGIN IMMEDIATE)."""
        self.store.lock_name("mynaemu staff accounts")

    # --- reads ----------------------------------------------------------------------------
    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM staff").fetchone()[0]

    def get(self, staff_id: str):
        return self.conn.execute("SELECT * FROM staff WHERE id = ?", (staff_id,)).fetchone()

    def rights_at(self, staff_id: str, at: str) -> set[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT right_name FROM staff_rights WHERE staff_id = ? AND granted_at <= ? "
            "AND (withdrawn_at IS NULL OR withdrawn_at > ?)", (staff_id, at, at)).fetchall()
        return {r[0] for r in rows}

    def open_grants(self, staff_id: str, right: str) -> list:
        return self.conn.execute(
            "SELECT * FROM staff_rights WHERE staff_id = ? AND right_name = ? AND withdrawn_at IS NULL "
            "ORDER BY id", (staff_id, right)).fetchall()

    def all(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM staff ORDER BY id").fetchall()]

    def grants(self, staff_id: str | None = None) -> list[dict]:
        if staff_id is None:
            rows = self.conn.execute("SELECT * FROM staff_rights ORDER BY staff_id, id").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM staff_rights WHERE staff_id = ? ORDER BY id",
                                     (staff_id,)).fetchall()
        return [dict(r) for r in rows]

    # --- writes (inside the caller's transaction) -------------------------------------------
    def insert(self, staff_id: str, password_hash: str, *, at: str, by: str) -> None:
        self.conn.execute("INSERT INTO staff (id, password_hash, password_set_at, created_at, created_by) "
                          "VALUES (?, ?, ?, ?, ?)", (staff_id, password_hash, at, at, by))

    def set_password(self, staff_id: str, password_hash: str, *, at: str) -> None:
        self.conn.execute("UPDATE staff SET password_hash = ?, password_set_at = ? WHERE id = ?",
                          (password_hash, at, staff_id))

    def grant(self, staff_id: str, right: str, *, at: str, by: str) -> None:
        self.conn.execute("INSERT INTO staff_rights (staff_id, right_name, granted_at, granted_by) "
                          "VALUES (?, ?, ?, ?)", (staff_id, right, at, by))

    def withdraw(self, staff_id: str, right: str, *, at: str, by: str) -> int:
        return self.conn.execute(
            "UPDATE staff_rights SET withdrawn_at = ?, withdrawn_by = ? WHERE staff_id = ? AND right_name = ? "
            "AND withdrawn_at IS NULL", (at, by, staff_id, right)).rowcount

    def revoke(self, staff_id: str, *, at: str, by: str) -> None:
        self.conn.execute("UPDATE staff SET revoked_at = ?, revoked_by = ? WHERE id = ?", (at, by, staff_id))
