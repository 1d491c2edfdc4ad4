"""The SQLite backend of the store: one private file under MYNAEMU_HOME, WAL, BEGIN IMMEDIATE writers.

The PostgreSQL dialect is postgres.py; what the two share (schema, SQL, table groups) does not
know which one it runs on, except through Connection.is_pg where locking differs.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from mynaemu.issuance.private_files import private_sqlite
from mynaemu.issuance.store.errors import StoreError


def connect(path: Path, *, busy_timeout: float) -> sqlite3.Connection:
    """Open (creating when missing) the store file at `path`, private to its owner, in WAL mode."""
    try:
        private_sqlite(path)  # 0600 file in a 0700 home, whatever the umask (and so -wal/-shm)
        # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
        conn = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: cannot open the store: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{path}: cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a crash loses no commit order
        # deleted rows (the holder keys dropped at 交付, cardwrite.py) are zeroed, not left in free pages
        conn.execute("PRAGMA secure_delete = ON")
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise StoreError(f"{path}: not a usable store: {exc}") from None
        raise
    return conn
