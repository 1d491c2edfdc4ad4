"""Reading a test's SQLite store directly (no mynaemu code in between): every table, the last audit record."""
from __future__ import annotations

import sqlite3

from mynaemu.issuance.store import DB_NAME


def dump(home) -> dict:
    """Every table of the store under `home`, rows in insertion order."""
    conn = sqlite3.connect(home / DB_NAME)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
    finally:
        conn.close()


def last_audit(home) -> dict:
    """The newest audit record, as a dict."""
    conn = sqlite3.connect(home / DB_NAME)
    conn.row_factory = sqlite3.Row
    try:
        return dict(conn.execute("SELECT * FROM audit ORDER BY id DESC LIMIT 1").fetchone())
    finally:
        conn.close()
