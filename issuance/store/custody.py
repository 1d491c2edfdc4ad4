"""Custody (lifecycle/cardwrite.py): holder keys only until the card holds them, each card's binding key, pending card writes."""
from __future__ import annotations

import datetime as _dt

from cryptography.hazmat.primitives import serialization

from mynaemu.issuance.store.values import iso

# The card key a presented card must prove it holds: the 共通AP key 0019 (cardwrite.py).
BINDING_ROLE = "common"


class CustodyTable:
    """Table group `keys`, `card_bindings`, `card_writes`."""

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

    # --- card_bindings: the public half of each card's 共通AP key ---------------------------
    def record_binding(self, app_id: str, role: str, public_key_hex: str, at: _dt.datetime) -> None:
        self.conn.execute("INSERT INTO card_bindings (application_id, role, public_key, created_at) "
                          "VALUES (?, ?, ?, ?) ON CONFLICT (application_id) DO UPDATE SET "
                          "role = excluded.role, public_key = excluded.public_key, created_at = excluded.created_at",
                          (app_id, role, public_key_hex, iso(at)))

    def binding_public_key(self, app_id: str) -> str | None:
        """The hex SubjectPublicKeyInfo recorded for the card `app_id`, or None."""
        row = self.conn.execute("SELECT public_key FROM card_bindings WHERE application_id = ?", (app_id,)).fetchone()
        return None if row is None else row[0]

    # --- card_writes: card files committed but not yet renamed into place -------------------
    def staged_writes_for(self, target: str) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT staged FROM card_writes WHERE target = ?", (target,))}

    def insert_card_write(self, write_id: str, *, app_id: str, operation: str, target: str, staged: str,
                          digest: str, previous: str | None, at: _dt.datetime, audit_id: int | None) -> None:
        self.conn.execute("INSERT INTO card_writes (id, application_id, operation, target, staged, digest, previous,"
                          " created_at, audit_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (write_id, app_id, operation, target, staged, digest, previous, iso(at), audit_id))

    def card_write(self, write_id: str):
        return self.conn.execute("SELECT * FROM card_writes WHERE id = ?", (write_id,)).fetchone()

    def card_writes(self) -> list:
        return self.conn.execute("SELECT * FROM card_writes ORDER BY created_at, id").fetchall()

    def restage_card_write(self, write_id: str, staged: str, digest: str) -> None:
        """In a transaction of its own: the pending write now publishes another staged file."""
        with self.transaction() as conn:
            conn.execute("UPDATE card_writes SET staged = ?, digest = ? WHERE id = ?", (staged, digest, write_id))

    def forget_card_write(self, write_id: str) -> None:
        """In a transaction of its own: the write is published (or found done)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM card_writes WHERE id = ?", (write_id,))


def migrate_custody(conn) -> None:
    """Schema v3 data step, for stores made before it: bind every card whose 共通AP key the store
    still holds, then delete the private keys (and the chip image copy) of every card already
    handed over."""
    rows = conn.execute("SELECT application_id, pem, created_at FROM keys WHERE role = ?", (BINDING_ROLE,)).fetchall()
    for row in rows:
        app_id, pem, created = row[0], row[1], row[2]
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
        conn.execute("INSERT INTO card_bindings (application_id, role, public_key, created_at) VALUES (?, ?, ?, ?)",
                     (app_id, BINDING_ROLE, public_hex(key.public_key()), created))
    conn.execute("DELETE FROM keys WHERE application_id IN "
                 "(SELECT application_id FROM cards WHERE delivered_at IS NOT NULL)")
    conn.execute("UPDATE cards SET image = NULL WHERE delivered_at IS NOT NULL")


def public_hex(public_key) -> str:
    """A public key as the hex of its DER SubjectPublicKeyInfo (how card_bindings keeps it)."""
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).hex()
